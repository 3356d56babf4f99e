#!/usr/bin/env bash
# Programs some tests drive, from Debian's packages (nothing downloaded at run time): chromium for the
# web page's tests, tiled for its tmxrasterizer (tileset.py's maps rendered by Tiled itself).
# Never fails: where they cannot install (no apt, not root), those tests skip and say why.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tmxrasterizer >/dev/null 2>&1 || need+=(tiled)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v chromium >/dev/null 2>&1 && echo "browser tests: $(chromium --version 2>/dev/null)" \
    || echo "browser tests will skip: could not install Debian's chromium (needs apt-get as root)"
command -v tmxrasterizer >/dev/null 2>&1 && echo "Tiled tests: tmxrasterizer from Debian's tiled" \
    || echo "Tiled tests will skip: could not install Debian's tiled (needs apt-get as root)"
exit 0
