#!/usr/bin/env bash
# Builds the Baton container image from Debian packages alone, with no registry base image:
# debootstrap makes a minimal Debian 13 (trixie) root file system with its nodejs (20.19),
# the packed baton-ha goes to /opt/baton with its production dependencies at the exact
# versions of package-lock.json (npm ci, no install scripts), and buildah turns
# the tree into an image (from scratch) and an OCI archive any engine can load:
#   podman load -i baton-ha-<version>.oci.tar     docker load -i ...     ctr image import ...
#
# Usage (as root, on Debian or Ubuntu with debootstrap and buildah installed):
#   deploy/container/build.sh [output-directory]      (default: ./build/container)
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), STORAGE_DRIVER for
# buildah (default vfs, which works where overlay mounts are not allowed).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$(realpath -m "${1:-build/container}")"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
for tool in debootstrap buildah node npm; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (apt-get install -y debootstrap buildah; Node.js 20 or later)" >&2; exit 2; }
done
[ -d node_modules ] || { echo "build.sh: run npm ci in the checkout first (npm pack builds with its dev dependencies)" >&2; exit 2; }
version="$(node -p 'require("./package.json").version')"
image="localhost/baton-ha:${version}"
[ "$(id -u)" = 0 ] || { echo "build.sh: debootstrap needs root" >&2; exit 2; }

rm -rf "$out" && mkdir -p "$out"
rootfs="$out/rootfs"

echo "== 1/4 the package and its production dependencies (the versions package-lock.json locks)"
npm pack --silent --pack-destination "$out" >/dev/null
mkdir -p "$out/app"
tar -xzf "$out/baton-ha-${version}.tgz" -C "$out/app" --strip-components=1
# The checkout's lock file, so the image runs the dependency versions CI tested, not the
# newest a fresh resolution finds that day. No install scripts: every dependency is
# JavaScript, and msgpackr's optional native encoder ships prebuilt.
cp package-lock.json "$out/app/"
(cd "$out/app" && npm ci --silent --omit=dev --ignore-scripts --no-audit --no-fund)
rm "$out/app/package-lock.json"

echo "== 2/4 a minimal Debian root file system with Node.js (debootstrap, $mirror)"
debootstrap --variant=minbase --include=nodejs,ca-certificates trixie "$rootfs" "$mirror" >"$out/debootstrap.log"
chroot "$rootfs" node --version

echo "== 3/4 Baton into /opt/baton, its user, its data directory"
cp -a "$out/app" "$rootfs/opt/baton"
chmod 0755 "$rootfs/opt/baton/dist/cli/main.js"
ln -sf /opt/baton/dist/cli/main.js "$rootfs/usr/local/bin/baton"
echo "baton:x:10001:10001:Baton:/var/lib/baton:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
echo "baton:x:10001:" >>"$rootfs/etc/group"
mkdir -p "$rootfs/var/lib/baton" "$rootfs/etc/baton"
chown 10001:10001 "$rootfs/var/lib/baton"
chmod 0700 "$rootfs/var/lib/baton"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
chroot "$rootfs" baton --version

echo "== 4/4 the image ($image) and its OCI archive"
container="$(buildah from scratch)"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
# A tar archive keeps owners and modes (buildah copy would make every file root's).
tar -C "$rootfs" -cf "$out/rootfs.tar" .
buildah add --quiet "$container" "$out/rootfs.tar" / >/dev/null
buildah config \
  --user 10001:10001 \
  --workingdir /var/lib/baton \
  --entrypoint '["/usr/local/bin/baton"]' \
  --cmd start \
  --env BATON_DATA=/var/lib/baton \
  --env NODE_ENV=production \
  --port 7101 --port 8101 \
  --volume /var/lib/baton \
  --label org.opencontainers.image.title=baton-ha \
  --label "org.opencontainers.image.version=${version}" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$container"
buildah commit --quiet "$container" "$image" >/dev/null
buildah push --quiet "$image" "oci-archive:$out/baton-ha-${version}.oci.tar:${image}"
ls -l "$out/baton-ha-${version}.oci.tar"
echo "built $image; load it with: podman load -i $out/baton-ha-${version}.oci.tar"
