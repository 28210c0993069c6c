#!/usr/bin/env bash
# City100 pairs 016-040 of both cameras, the validation split of benchmarks/real_images.py
# (--split val --sets city100 --data OUT): the shared data holds 001-015 only, which are
# reported. Copies them byte for byte from a clone of https://github.com/ngchc/CameraSR
# (MIT; snapshot 336cac1 used), renamed to lower case as in the shared data.
# Usage: benchmarks/city100_validation.sh CAMERASR_CLONE OUT
set -euo pipefail
clone=$1
out=$2
for camera in NikonD5500 iPhoneX; do
    mkdir -p "$out/real/City100_$camera"
    for i in $(seq 16 40); do
        key=$(printf %03d "$i")
        for side in H L; do
            git -C "$clone" show "HEAD:City100/City100_$camera/$key$side.PNG" \
                >"$out/real/City100_$camera/$key$side.png"
        done
    done
done
