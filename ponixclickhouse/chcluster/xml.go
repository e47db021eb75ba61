package chcluster

import (
	"archive/tar"
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
	"time"
)

// ConfigPath is where each ClickHouse container finds the cluster's configuration.
const ConfigPath = "/etc/clickhouse-server/config.d/ponix-cluster.xml"

// serverConfig renders the config.d file of node n: macros, the cluster in remote_servers,
// ZooKeeper, distributed DDL, listening on all interfaces. Elements that the stock config.xml
// declares with an incl= attribute are replaced, not merged, so that no include file is consulted.
func (c *Cluster) serverConfig(n *Node) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("<?xml version=\"1.0\"?>\n")
	w("<!-- Written by github.com/ponix-go/ponix/ponixclickhouse/chcluster for %s. -->\n", esc(n.Name))
	w("<yandex>\n")
	w("    <listen_host>0.0.0.0</listen_host>\n")
	w("    <interserver_http_host>%s</interserver_http_host>\n", esc(n.Name))
	w("    <macros replace=\"replace\">\n")
	w("        <cluster>%s</cluster>\n", esc(c.cfg.ClusterName))
	w("        <shard>%d</shard>\n", n.Shard)
	w("        <replica>%s</replica>\n", esc(n.Name))
	w("    </macros>\n")
	w("    <remote_servers replace=\"replace\">\n")
	w("        <%s>\n", c.cfg.ClusterName)
	for s := 1; s <= c.cfg.Shards; s++ {
		w("            <shard>\n")
		w("                <internal_replication>true</internal_replication>\n")
		for _, r := range c.Shard(s) {
			w("                <replica>\n")
			w("                    <host>%s</host>\n", esc(r.Name))
			w("                    <port>%d</port>\n", NativePort)
			w("                    <user>%s</user>\n", esc(c.cfg.User))
			if c.cfg.Password != "" {
				w("                    <password>%s</password>\n", esc(c.cfg.Password))
			}
			w("                </replica>\n")
		}
		w("            </shard>\n")
	}
	w("        </%s>\n", c.cfg.ClusterName)
	w("    </remote_servers>\n")
	w("    <zookeeper replace=\"replace\">\n")
	w("        <node>\n")
	w("            <host>%s</host>\n", esc(c.zk.Name))
	w("            <port>%d</port>\n", ZooKeeperPort)
	w("        </node>\n")
	w("        <session_timeout_ms>%d</session_timeout_ms>\n", c.cfg.ZooKeeperSessionTimeout.Milliseconds())
	w("        <operation_timeout_ms>%d</operation_timeout_ms>\n", (5 * time.Second).Milliseconds())
	w("    </zookeeper>\n")
	w("    <distributed_ddl replace=\"replace\">\n")
	w("        <path>/clickhouse/task_queue/ddl</path>\n")
	w("    </distributed_ddl>\n")
	w("</yandex>\n")
	return []byte(b.String())
}

// esc escapes s for XML character data.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// tarFile returns a tar archive holding one regular file at name (a relative path; its parent
// directories are included), as `docker cp - CONTAINER:DIR` expects.
func tarFile(name string, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/") + "/"
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: now}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: now}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
