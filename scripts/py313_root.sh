#!/usr/bin/env bash
# A Debian 13 (trixie) root with CPython 3.13, the Python of Google Colab since 2026-08-19, for the tests that
# run wattbench on 3.13 (tests/test_py313.py). Built once and cached; needs root (debootstrap, chroot, mount).
#
#   bash scripts/py313_root.sh build              build the root (skipped when it is there), print its path
#   bash scripts/py313_root.sh venv REQ...        a venv in the root holding REQ (requirements files), cached
#                                                 by their contents; prints its path inside the root
#   bash scripts/py313_root.sh run [--bind DIR]... -- CMD...
#                                                 run CMD in the root, in the current directory, each DIR
#                                                 (and the current directory) visible at the same path
#
# WATTBENCH_PY313_ROOT: where the root lives (default /var/cache/wattbench/py313); WATTBENCH_PY313_PATH: folders
# put before the root's own PATH (e.g. a venv's bin). The rest of the environment passes through, but
# PYTHONPATH, VIRTUAL_ENV, TIKTOKEN_CACHE_DIR (host paths), and pip's host configuration (see below). Mounts are made in a
# private mount namespace (unshare -m): they vanish with the command, whatever happens to it.
# pip inside the root reaches the package index like the host's pip: the host's resolv.conf and system CA
# bundle are copied in (the index is reached through a proxy only that bundle trusts). The host's own pip
# configuration (local wheel folders) is not: the root sees the package index as a fresh machine would.
set -euo pipefail

ROOT="${WATTBENCH_PY313_ROOT:-/var/cache/wattbench/py313}"
SUITE=trixie
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# Debian packages: Python 3.13 and what pip needs to build llama-cpp-python from source.
PACKAGES=python3,python3-venv,python3-dev,build-essential,cmake,git,ca-certificates
# The same portable llama.cpp build as scripts/setup.sh (a native build uses AMX some VMs do not run).
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

die() { echo "error: $*" >&2; exit 2; }

mirror() {
    # The host's Debian mirror (apt's deb822 sources, then the one-line format), else deb.debian.org.
    local uri
    uri=$(grep -h -m1 -E '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
          | head -n1 || true)
    if [[ -z "$uri" ]]; then
        uri=$(grep -h -m1 -E '^deb .*debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
              2>/dev/null | awk '{print $2}' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

in_root() {
    # in_root DIR... -- CMD...: CMD in the root, /proc /dev /sys and each DIR mounted, cwd kept.
    local binds=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do binds+=("$(realpath "$1")"); shift; done
    [[ "${1:-}" == "--" ]] && shift
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    local here script
    here=$(pwd)
    script='set -e; r=$1; shift; here=$1; shift; n=$1; shift
        mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"; mount --rbind /sys "$r/sys"
        i=0; while [ $i -lt "$n" ]; do d=$1; shift; mkdir -p "$r$d"; mount --bind "$d" "$r$d"; i=$((i+1)); done
        exec chroot "$r" /bin/sh -c '"'"'cd "$0" && exec "$@"'"'"' "$here" "$@"'
    local all=("${binds[@]}" "$here")
    exec env -u PYTHONPATH -u VIRTUAL_ENV -u PYTHONHOME -u TIKTOKEN_CACHE_DIR \
        PATH="${WATTBENCH_PY313_PATH:+$WATTBENCH_PY313_PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        PIP_CERT="$CA_BUNDLE" SSL_CERT_FILE="$CA_BUNDLE" REQUESTS_CA_BUNDLE="$CA_BUNDLE" \
        PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_DISABLE_PIP_VERSION_CHECK=1 \
        CMAKE_ARGS="${CMAKE_ARGS:-$LLAMA_CMAKE_ARGS}" \
        unshare -m --propagation private /bin/sh -c "$script" sh "$ROOT" "$here" "${#all[@]}" "${all[@]}" "$@"
}

build() {
    [[ $(id -u) == 0 ]] || die "building the Python 3.13 root needs root (debootstrap, chroot)"
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$ROOT.lock"
    flock 9
    # Rebuilt when the Debian packages asked for change (the stamp's first line lists them).
    if [[ "$(head -n1 "$ROOT/.wattbench-root" 2>/dev/null)" != "$SUITE $PACKAGES" ]]; then
        command -v debootstrap >/dev/null 2>&1 || {
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
        }
        rm -rf "$ROOT"
        local start=$SECONDS
        echo "building a Debian $SUITE root in $ROOT (once; a few minutes)" >&2
        debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$(mirror)" \
            > "$ROOT.debootstrap.log" 2>&1 || { tail -n 20 "$ROOT.debootstrap.log" >&2;
                                                die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
        cp "$CA_BUNDLE" "$ROOT$CA_BUNDLE"
        { echo "$SUITE $PACKAGES"; chroot "$ROOT" python3 --version; } > "$ROOT/.wattbench-root"
        echo "root built in $((SECONDS - start)) s: $(tail -n1 "$ROOT/.wattbench-root")" >&2
    fi
    flock -u 9
    echo "$ROOT"
}

venv() {
    # A venv per set of requirements (keyed by the files' contents), built once under the lock.
    [[ $# -gt 0 ]] || die "venv needs requirements files"
    build >/dev/null
    local key files=()
    for req in "$@"; do files+=("$(realpath "$req")"); done
    key=$(cat "${files[@]}" | sha256sum | cut -c1-12)
    local dir="/opt/venv-$key"
    exec 8>"$ROOT.venv-$key.lock"
    flock 8
    if [[ ! -f "$ROOT$dir/.done" ]]; then
        rm -rf "$ROOT$dir"
        local start=$SECONDS log="$ROOT$dir.log"
        echo "installing ${*} into $dir with Python 3.13 (once; llama-cpp-python builds from source)" >&2
        local args=()
        for f in "${files[@]}"; do args+=(-r "$f"); done
        if ! (in_root "$(dirname "${files[0]}")" -- /bin/sh -c \
                'python3 -m venv "$0" && "$0/bin/python" -m pip install -q "$@"' "$dir" "${args[@]}") \
                > "$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "pip could not install ${*} with Python 3.13 (log: $log)"
        fi
        touch "$ROOT$dir/.done"
        echo "venv built in $((SECONDS - start)) s" >&2
    fi
    flock -u 8
    echo "$dir"
}

case "${1:-}" in
    build) build ;;
    venv) shift; venv "$@" ;;
    run)
        shift
        [[ -f "$ROOT/.wattbench-root" ]] || build >/dev/null
        binds=()
        while [[ $# -gt 0 && "$1" != "--" ]]; do
            [[ "$1" == "--bind" ]] || die "run: expected --bind DIR or --, got $1"
            binds+=("$2"); shift 2
        done
        [[ "${1:-}" == "--" ]] && shift
        [[ $# -gt 0 ]] || die "run: no command"
        in_root "${binds[@]}" -- "$@"
        ;;
    *) die "usage: bash scripts/py313_root.sh build | venv REQ... | run [--bind DIR]... -- CMD..." ;;
esac
