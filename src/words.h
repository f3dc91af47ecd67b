// Words: for each mode enum, the one table of the words that name its values. The CLI's enum options
// (add_enum_option) and the Python module's keyword arguments both parse through these tables.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"

namespace bs {

template <class E>
using Words = std::vector<std::pair<std::string, E>>;

// "a, b or c" for messages and --help.
template <class E>
std::string word_list(const Words<E>& table) {
  std::string list;
  for (size_t i = 0; i < table.size(); ++i)
    list += (i == 0 ? "" : i + 1 == table.size() ? " or " : ", ") + table[i].first;
  return list;
}

// The value `word` names; another word is a UserError naming `what` (an option) and the words.
template <class E>
E parse_word(const Message& what, const std::string& word, const Words<E>& table) {
  for (const auto& [w, e] : table)
    if (w == word) return e;
  throw UserError(what + " '" + word + "': expected " + word_list(table));
}

// The word that names `value` (the table's first for it).
template <class E>
const std::string& word_of(E value, const Words<E>& table) {
  for (const auto& [w, e] : table)
    if (e == value) return w;
  throw std::logic_error("word_of: a value without a word");
}

}  // namespace bs
