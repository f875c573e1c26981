#!/usr/bin/env bash
# System data for deepatlas on Debian (run as root; elsewhere it says what it skips).
#   Fashion-MNIST       apt dataset-fashion-mnist  -> /usr/share/datasets/fashion-mnist
#   King James Bible    apt bible-kjv              -> the `bible` command
#   speech              apt espeak-ng, pocketsphinx-testdata (LibriVox recordings with transcripts)
#   Chromium            apt chromium               -> /usr/bin/chromium (browser test of the atlas)
#   npm                 apt npm                    -> fetches onnxruntime-web for S5's page (make install-test)
#   Jane Austen novels  apt r-cran-janeaustenr, unpacked (not installed: no R needed)
#                       -> $DEEPATLAS_CACHE/janeaustenr (default ~/.cache/deepatlas)
set -u
cache="${DEEPATLAS_CACHE:-$HOME/.cache/deepatlas}"
mkdir -p "$cache"
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "setup_system: not root on Debian; skipping system data (tests that need it will skip and say why)"
  exit 0
fi
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v bible >/dev/null || need+=(bible-kjv)
command -v espeak-ng >/dev/null || need+=(espeak-ng)   # M3: speech synthesised for the CTC recogniser
[ -f /usr/share/pocketsphinx/test/data/librivox/transcription ] || need+=(pocketsphinx-testdata)   # M3: LibriVox recordings
[ -x /usr/bin/chromium ] || need+=(chromium)  # the atlas browser test (Playwright drives it)
command -v npm >/dev/null || need+=(npm)      # S5: `npm pack onnxruntime-web` for the in-browser page
if [ ${#need[@]} -gt 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null \
    || echo "setup_system: could not install ${need[*]}"
fi
if [ ! -f "$cache/janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq r-cran-janeaustenr 2>/dev/null || { apt-get update -qq && apt-get download -qq r-cran-janeaustenr; }) >/dev/null 2>&1
  if ls "$tmp"/r-cran-janeaustenr_*.deb >/dev/null 2>&1; then
    dpkg -x "$tmp"/r-cran-janeaustenr_*.deb "$cache/janeaustenr"
  else
    echo "setup_system: could not download r-cran-janeaustenr"
  fi
  rm -rf "$tmp"
fi
echo "setup_system: system data ready"
