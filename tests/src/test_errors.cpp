// Library errors name parameters; front ends spell them. Oracles: the messages written out by hand
// in each spelling (the library's names, the CLI's flags).
#include <gtest/gtest.h>

#include "errors.h"
#include "h5io.h"
#include "optimizer.h"

using namespace bs;

TEST(Errors, AMessageRendersEachParameterAsTheFrontEndNamesIt) {
  const Message m = param("trace_probes") + " must be at least 2, and " + param("lr") + " positive";
  EXPECT_EQ(m.plain(), "trace_probes must be at least 2, and lr positive");
  EXPECT_EQ(m.render(flag_of), "--trace-probes must be at least 2, and --lr positive");
  EXPECT_EQ(m.render([](const std::string& p) { return "<" + p + ">"; }),
            "<trace_probes> must be at least 2, and <lr> positive");
  EXPECT_TRUE(Message().empty());
  EXPECT_EQ(Message("no parameter").render(flag_of), "no parameter");
}

TEST(Errors, LibraryChecksNameTheParameterNotAFlag) {
  OptimizerOptions o;
  o.weight_decay = -1;
  try {
    validate(o);
    FAIL() << "a negative weight decay was accepted";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "weight_decay must be >= 0");
    EXPECT_EQ(e.message.render(flag_of), "--weight-decay must be >= 0");
  }
  try {
    read_h5_dataset("/nonexistent/x.h5", "inputs", param("val_data"));
    FAIL() << "a missing file was read";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "val_data '/nonexistent/x.h5': file not found or not readable");
    EXPECT_EQ(e.message.render(flag_of), "--val-data '/nonexistent/x.h5': file not found or not readable");
  }
}
