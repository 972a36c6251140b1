#!/usr/bin/env bash
# Installs the Debian packages listed in packages.txt that are missing. Needs root; without root it
# only says what is missing (tests that need them skip with that reason).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
while read -r pkg cmd; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    if ! command -v "${cmd:-$pkg}" >/dev/null 2>&1 && ! PATH=$PATH:/usr/sbin:/sbin command -v "${cmd:-$pkg}" >/dev/null 2>&1 && ! [[ "${cmd:-}" == /* && -e "$cmd" ]]; then
        missing+=("$pkg")
    fi
done <"$here/packages.txt"
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "not root: cannot install ${missing[*]}; tests that need them will skip" >&2
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
