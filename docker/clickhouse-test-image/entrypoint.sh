#!/bin/sh
# Entrypoint of ponix-test/clickhouse:18.16, modelled on the official clickhouse/clickhouse-server
# image: it honours CLICKHOUSE_USER, CLICKHOUSE_PASSWORD and CLICKHOUSE_DB, listens on 0.0.0.0
# (9000 native, 8123 http) and runs clickhouse-server in the foreground as PID 1.
set -eu

CLICKHOUSE_USER="${CLICKHOUSE_USER:-default}"
CLICKHOUSE_PASSWORD="${CLICKHOUSE_PASSWORD:-}"
CLICKHOUSE_DB="${CLICKHOUSE_DB:-}"
CONFIG=/etc/clickhouse-server/config.xml

mkdir -p /etc/clickhouse-server/config.d /etc/clickhouse-server/users.d \
	/var/lib/clickhouse /var/log/clickhouse-server

xml_escape() {
	printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'
}

cat >/etc/clickhouse-server/config.d/docker.xml <<XML
<yandex>
    <listen_host>0.0.0.0</listen_host>
    <tcp_port>9000</tcp_port>
    <http_port>8123</http_port>
    <logger>
        <level>information</level>
        <console>1</console>
    </logger>
</yandex>
XML

password="$(xml_escape "$CLICKHOUSE_PASSWORD")"
if [ "$CLICKHOUSE_USER" = "default" ]; then
	cat >/etc/clickhouse-server/users.d/docker.xml <<XML
<yandex>
    <users>
        <default>
            <password>${password}</password>
            <networks replace="replace"><ip>::/0</ip></networks>
        </default>
    </users>
</yandex>
XML
else
	cat >/etc/clickhouse-server/users.d/docker.xml <<XML
<yandex>
    <users>
        <default remove="remove"></default>
        <${CLICKHOUSE_USER}>
            <password>${password}</password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </${CLICKHOUSE_USER}>
    </users>
</yandex>
XML
fi

if [ -n "$CLICKHOUSE_DB" ]; then
	# Like the official image: create the database with a temporary server that listens on
	# localhost only, so that clients never see the public port before the database exists.
	sed -e 's|<tcp_port>9000</tcp_port>|<tcp_port>19000</tcp_port><listen_host>127.0.0.1</listen_host>|' \
		-e 's|<http_port>8123</http_port>|<http_port>18123</http_port>|' \
		-e 's|<interserver_http_port>9009</interserver_http_port>|<interserver_http_port>19009</interserver_http_port>|' \
		-e 's|<users_config>users.xml</users_config>|<users_config>/etc/clickhouse-server/users.xml</users_config>|' \
		"$CONFIG" >/tmp/init-config.xml
	clickhouse-server --config-file=/tmp/init-config.xml >/tmp/init.log 2>&1 &
	init_pid=$!
	i=0
	until clickhouse-client --port 19000 --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --query 'SELECT 1' >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -ge 300 ]; then
			echo "entrypoint: temporary clickhouse-server did not start; its log follows" >&2
			cat /tmp/init.log >&2
			exit 1
		fi
		sleep 0.1
	done
	clickhouse-client --port 19000 --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" \
		--query "CREATE DATABASE IF NOT EXISTS \`${CLICKHOUSE_DB}\`"
	kill "$init_pid"
	wait "$init_pid" || true
	rm -f /tmp/init-config.xml
fi

exec clickhouse-server --config-file="$CONFIG" "$@"
