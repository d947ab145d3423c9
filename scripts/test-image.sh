#!/usr/bin/env bash
# Build the tiny test image the container tests run: Debian's busybox-static in a rootfs whose
# /etc/os-release is not the host's, imported into podman as localhost/suanli-test:1 (or $1).
# Nothing is pulled from a registry; busybox-static comes from Debian's archive (apt-get download)
# or, when it is installed already, from /bin/busybox. Needs podman + runc (`make containers`).
set -euo pipefail
IMAGE="${1:-localhost/suanli-test:1}"
if podman image exists "$IMAGE" 2>/dev/null; then
  echo "test-image: $IMAGE is there"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/workdir"
if [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ! ldd /bin/busybox >/dev/null 2>&1; then
  cp /bin/busybox "$ROOT/bin/busybox"   # the static one (busybox-static installs it there)
else
  (cd "$WORK" && apt-get download busybox-static >/dev/null)
  dpkg-deb -x "$WORK"/busybox-static_*.deb "$WORK/deb"
  cp "$WORK/deb/bin/busybox" "$ROOT/bin/busybox"
fi
for applet in $("$ROOT/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done
printf 'NAME="suanli-test busybox"\nID=suanli-test\nVERSION_ID=1\n' >"$ROOT/etc/os-release"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"
tar -C "$ROOT" -cf "$WORK/rootfs.tar" .
podman import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$WORK/rootfs.tar" "$IMAGE" >/dev/null
echo "test-image: built $IMAGE"
