#!/usr/bin/env bash
# build-images.sh builds, without any registry, the images of the ClickHouse test cluster that
# ponixclickhouse/chcluster starts (2 shards x 2 replicas + ZooKeeper):
#
#   ponix-test/zookeeper:3.8    Debian bookworm's zookeeper 3.8.0 package on a debootstrap rootfs
#                               with a headless JRE (openjdk-17-jre-headless). Standalone server in
#                               the foreground (PID 1), client port 2181, data in /var/lib/zookeeper
#                               inside the container, log on stdout.
#   ponix-test/clickhouse:18.16 built by docker/clickhouse-test-image/build.sh (skipped there when
#                               it exists).
#
# Debian's zookeeper package depends on default-jre, which drags in GTK and X11 (~150 MB) that a
# server never uses. The image therefore installs libzookeeper-java (the jars) and
# openjdk-17-jre-headless with debootstrap, then the zookeeper package itself (scripts, example
# config, postinst: user, directories) with `dpkg --force-depends`.
#
# Usage: build-images.sh [-f] [zookeeper|clickhouse ...]   (default: both; -f rebuilds even when
#        an image exists)
# Env:   ZOOKEEPER_IMAGE (default ponix-test/zookeeper:3.8)
#        CLICKHOUSE_IMAGE (default ponix-test/clickhouse:18.16)
#        MIRROR (default: the first URIs: line of /etc/apt/sources.list.d/debian.sources)
# Needs root (debootstrap, chroot), docker, and debootstrap (installed with apt-get when missing).
set -euo pipefail

ZOOKEEPER_IMAGE="${ZOOKEEPER_IMAGE:-ponix-test/zookeeper:3.8}"
CLICKHOUSE_IMAGE="${CLICKHOUSE_IMAGE:-ponix-test/clickhouse:18.16}"
HERE="$(cd "$(dirname "$0")" && pwd)"

force=0
if [[ "${1:-}" == "-f" ]]; then force=1; shift; fi
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(zookeeper clickhouse)

log() { echo "cluster-images: $*"; }

build_zookeeper() {
	if [[ $force -eq 0 ]] && docker image inspect "$ZOOKEEPER_IMAGE" >/dev/null 2>&1; then
		log "$ZOOKEEPER_IMAGE exists; nothing to do (use -f to rebuild)"
		return
	fi
	command -v debootstrap >/dev/null || { log "installing debootstrap"; apt-get install -y -qq debootstrap >/dev/null; }
	local mirror="${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
	mirror="${mirror:-http://deb.debian.org/debian}"

	local work rootfs
	work="$(mktemp -d /tmp/ponix-zookeeper-image.XXXXXX)"
	rootfs="$work/rootfs"
	# shellcheck disable=SC2064 # expand $work now
	trap "umount '$rootfs/proc' 2>/dev/null || true; rm -rf '$work'" EXIT INT TERM

	log "debootstrap bookworm (minbase, libzookeeper-java, openjdk-17-jre-headless) from $mirror"
	debootstrap --variant=minbase --include=libzookeeper-java,openjdk-17-jre-headless,adduser \
		bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -50 "$work/debootstrap.log"; exit 1; }

	log "installing the zookeeper package (without its default-jre dependency)"
	cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
	echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
	mount -t proc proc "$rootfs/proc"
	chroot "$rootfs" sh -eu -c '
		apt-get update -qq
		cd /tmp
		apt-get download -qq zookeeper
		dpkg --force-depends -i zookeeper_*.deb
		rm -f zookeeper_*.deb
	' >"$work/zookeeper.log" 2>&1 || { tail -50 "$work/zookeeper.log"; exit 1; }
	umount "$rootfs/proc"
	[[ "$(chroot "$rootfs" dpkg-query -W -f '${Version}' zookeeper)" == 3.8.* ]] ||
		{ log "zookeeper 3.8 is not installed in the image"; exit 1; }

	# Configuration: a standalone server, data inside the container, log to the console.
	mkdir -p "$rootfs/etc/zookeeper/conf_docker"
	cp "$rootfs/etc/zookeeper/conf_example/log4j.properties" \
		"$rootfs/etc/zookeeper/conf_example/configuration.xsl" "$rootfs/etc/zookeeper/conf_docker/"
	cat >"$rootfs/etc/zookeeper/conf_docker/zoo.cfg" <<'CFG'
# ponix-test/zookeeper: standalone ZooKeeper for test clusters.
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper/data
dataLogDir=/var/lib/zookeeper/datalog
clientPort=2181
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr,mntr,conf,envi
autopurge.purgeInterval=1
CFG
	echo 1 >"$rootfs/etc/zookeeper/conf_docker/myid"
	chroot "$rootfs" update-alternatives --quiet --install /etc/zookeeper/conf zookeeper-conf /etc/zookeeper/conf_docker 50
	cat >"$rootfs/entrypoint.sh" <<'SH'
#!/bin/sh
# Entrypoint of ponix-test/zookeeper:3.8: a standalone ZooKeeper in the foreground as PID 1.
# Env: ZOO_HEAP (default 256m), JVMFLAGS (extra JVM options).
set -eu
mkdir -p /var/lib/zookeeper/data /var/lib/zookeeper/datalog
chown -R zookeeper:zookeeper /var/lib/zookeeper
heap="${ZOO_HEAP:-256m}"
# shellcheck disable=SC2086 # JVMFLAGS is a list of options
exec setpriv --reuid=zookeeper --regid=zookeeper --init-groups \
	java -Xms"$heap" -Xmx"$heap" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
	-Dzookeeper.log.dir=/var/log/zookeeper -Dzookeeper.root.logger=INFO,CONSOLE \
	-Dzookeeper.console.threshold=INFO -Djava.net.preferIPv4Stack=true \
	${JVMFLAGS:-} \
	-cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar \
	org.apache.zookeeper.server.ZooKeeperServerMain /etc/zookeeper/conf/zoo.cfg
SH
	chmod 0755 "$rootfs/entrypoint.sh"

	# Keep the image small: no package caches, lists, docs, man pages or locales.
	# (ct.sym is for javac; classes_nocoops.jsa only serves heaps over 32 GB.)
	rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/cache/apt/"*.bin "$rootfs/var/lib/apt/lists/"* \
		"$rootfs"/usr/lib/jvm/*/lib/ct.sym "$rootfs"/usr/lib/jvm/*/lib/server/classes_nocoops.jsa \
		"$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/locale" \
		"$rootfs/usr/share/zookeeper/zooinspector" "$rootfs/var/log/"*.log "$rootfs/tmp/"*
	: >"$rootfs/etc/resolv.conf"

	log "importing $ZOOKEEPER_IMAGE"
	tar -C "$rootfs" --numeric-owner -c . | docker import \
		--change 'ENTRYPOINT ["/entrypoint.sh"]' \
		--change 'EXPOSE 2181' \
		--change 'ENV LANG=C.UTF-8' \
		- "$ZOOKEEPER_IMAGE" >/dev/null
	log "built $ZOOKEEPER_IMAGE ($(docker image inspect -f '{{.Size}}' "$ZOOKEEPER_IMAGE" | awk '{printf "%d MB", $1/1000000}'))"
}

build_clickhouse() {
	local args=()
	[[ $force -eq 1 ]] && args=(-f)
	IMAGE="$CLICKHOUSE_IMAGE" sh "$HERE/../clickhouse-test-image/build.sh" "${args[@]}"
}

for t in "${targets[@]}"; do
	case "$t" in
	zookeeper) build_zookeeper ;;
	clickhouse) build_clickhouse ;;
	*) log "unknown image $t (want zookeeper or clickhouse)"; exit 2 ;;
	esac
done
