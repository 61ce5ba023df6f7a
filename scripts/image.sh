#!/usr/bin/env bash
# Build Tessera's OCI image with buildah, from scratch: no base image is pulled. The image
# holds the release `tessera` binary, the shared libraries it links (as `ldd` lists them),
# the CA certificates of this machine, and a non-root user; there is no shell.
#
#   scripts/image.sh                      # builds target/release/tessera, tags localhost/tessera:<version>
#   scripts/image.sh --tag registry.example.com/platform/tessera:0.1.0
#   scripts/image.sh --binary PATH        # package an already built binary instead
#
# Run it:
#   podman run --rm -p 8080:8080 -v /etc/tessera:/etc/tessera:ro localhost/tessera:<version>
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
tag="localhost/tessera:$version"
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

for tool in buildah ldd; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "image.sh: $tool is missing (Debian: apt-get install buildah)" >&2
    exit 1
  fi
done
if [ -z "$binary" ]; then
  cargo build --release --locked -p tessera-broker --bin tessera
  binary=target/release/tessera
fi
ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -f "$ca" ]; then
  echo "image.sh: $ca is missing (Debian: apt-get install ca-certificates)" >&2
  exit 1
fi
commit=$("$binary" --version | sed -n 's/.*(commit \([^,]*\),.*/\1/p')

# The files that are not the binary: the user, and the state directory it owns.
rootfs=$(mktemp -d)
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/etc" "$rootfs/var/lib/tessera" "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\ntessera:x:65532:65532:Tessera:/var/lib/tessera:/sbin/nologin\n' \
  > "$rootfs/etc/passwd"
printf 'root:x:0:\ntessera:x:65532:\n' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
buildah copy --quiet "$ctr" "$rootfs/etc" /etc >/dev/null
buildah copy --quiet "$ctr" "$rootfs/tmp" /tmp >/dev/null
buildah copy --quiet --chown 65532:65532 "$ctr" "$rootfs/var/lib/tessera" /var/lib/tessera >/dev/null
buildah copy --quiet "$ctr" "$ca" /etc/ssl/certs/ca-certificates.crt >/dev/null

# Each library at the path the binary's loader looks for it, as a regular file.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  buildah copy --quiet "$ctr" "$(readlink -f "$lib")" "$lib" >/dev/null
done
buildah copy --quiet --chmod 0755 "$ctr" "$binary" /usr/local/bin/tessera >/dev/null

buildah config \
  --user 65532:65532 \
  --workingdir /var/lib/tessera \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --entrypoint '["/usr/local/bin/tessera"]' \
  --cmd '["serve", "--config", "/etc/tessera/broker.yaml"]' \
  --port 8080 --port 8090 --port 9464 \
  --volume /var/lib/tessera \
  --label org.opencontainers.image.title=tessera \
  --label org.opencontainers.image.description="Cross-cloud workload identity broker" \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.revision="$commit" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$tag" >/dev/null
trap 'rm -rf "$rootfs"' EXIT
echo "$tag"
