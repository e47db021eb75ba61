package ponixclickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestTableNamesAreValidatedAndQuoted(t *testing.T) {
	good := map[string]string{
		"processed_envelopes":       "`processed_envelopes`",
		"ponix.processed_envelopes": "`ponix`.`processed_envelopes`",
		"_t1":                       "`_t1`",
	}
	for in, want := range good {
		tb, err := ParseTable(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if q, _ := tb.Quoted(); q != want {
			t.Errorf("%q quoted as %s, want %s", in, q, want)
		}
	}
	for _, bad := range []string{"", "1abc", "a b", "t; DROP TABLE x", "t`", "x.y.z", "db.", ".t", "tä", "t--", "t'"} {
		if _, err := ParseTable(bad); !errors.Is(err, ErrInvalidIdentifier) {
			t.Errorf("%q accepted (err %v)", bad, err)
		}
	}
}

func TestClassifyTellsRowsFromTheSink(t *testing.T) {
	ex := func(code int32) error {
		return &WriteError{Table: Table{Name: "t"}, Rows: 3, Op: "send", Err: &clickhouse.Exception{Code: code}}
	}
	cases := map[string]struct {
		err  error
		want Class
	}{
		"refused":           {&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ClassUnreachable},
		"reset":             {syscall.ECONNRESET, ClassUnreachable},
		"eof":               {io.EOF, ClassUnreachable},
		"deadline":          {context.DeadlineExceeded, ClassUnreachable},
		"unreachable addr":  {&ConfigError{Setting: "Addr", Err: ErrUnreachable}, ClassUnreachable},
		"too many parts":    {ex(252), ClassOverload},
		"memory":            {ex(241), ClassOverload},
		"disk full":         {ex(75), ClassStorage},
		"wrong password":    {ex(193), ClassAuthentication},
		"auth config":       {&ConfigError{Setting: "Username/Password", Err: ErrAuthentication}, ClassAuthentication},
		"unknown table":     {ex(60), ClassSchema},
		"no column":         {ex(16), ClassSchema},
		"unknown database":  {ex(81), ClassSchema},
		"schema check":      {&SchemaError{Table: Table{Name: "t"}, TableMissing: true}, ClassSchema},
		"read-only replica": {ex(242), ClassReadOnly},
		"zookeeper":         {ex(999), ClassReadOnly},
		"cannot parse":      {ex(6), ClassData},
		"throwIf":           {ex(395), ClassData},
		"type mismatch":     {ex(53), ClassData},
		"unknown code":      {ex(12345), ClassUnknown},
		"unplaceable":       {errors.New("something unknown"), ClassUnknown},
		"bad row":           {&RowError{Index: 1, Err: errors.New("value cannot be stored")}, ClassRow},
		"canceled":          {fmt.Errorf("insert: %w", context.Canceled), ClassCanceled},
		"bad name":          {fmt.Errorf("x: %w", ErrInvalidIdentifier), ClassSchema},
		"nil":               {nil, ""},
	}
	for name, tc := range cases {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify = %q, want %q", name, got, tc.want)
		}
	}
	for _, c := range SinkClasses() {
		if !c.SinkFault() {
			t.Errorf("%s is listed as a sink class but is not a sink fault", c)
		}
	}
	for _, c := range []Class{ClassRow, ClassData, ClassCanceled, ""} {
		if c.SinkFault() {
			t.Errorf("%q must not be a sink fault", c)
		}
	}
	var rej interface{ RejectedIndex() int }
	if !errors.As(fmt.Errorf("write: %w", &RowError{Index: 3, Err: errors.New("value cannot be stored")}), &rej) || rej.RejectedIndex() != 3 {
		t.Error("RowError does not report its index as a rejection")
	}
	var rf interface{ RecordFault() bool }
	if !errors.As(fmt.Errorf("store: %w", ex(6)), &rf) || !rf.RecordFault() {
		t.Error("a parse error of the server does not report a record fault")
	}
	if errors.As(fmt.Errorf("store: %w", ex(75)), &rf) && rf.RecordFault() {
		t.Error("a disk-full error reports a record fault")
	}
}

func TestClassifyOpenErrorNamesTLS(t *testing.T) {
	withCert := &tls.Config{Certificates: []tls.Certificate{{}}}
	reset := fmt.Errorf("handshake: failed to send hello: write: %w", syscall.ECONNRESET)
	unknownCA := fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}})
	cases := []struct {
		name    string
		tls     *tls.Config
		err     error
		setting string
		want    error
	}{
		{"untrusted server certificate", &tls.Config{}, unknownCA, "TLS", ErrTLS},
		{"reset without a client certificate", &tls.Config{}, reset, "TLS", ErrTLS},
		{"reset with a client certificate (refused without an alert)", withCert, reset, "TLS", ErrTLS},
		{"reset without TLS", nil, reset, "Addr", ErrUnreachable},
		{"refused with TLS", &tls.Config{}, fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "Addr", ErrUnreachable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := classifyOpenError(Config{Addr: "db:9440", TLS: tc.tls}, tc.err)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Setting != tc.setting || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v; want a ConfigError for %s wrapping %v", err, tc.setting, tc.want)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("err = %v does not wrap the driver's error", err)
			}
			if c := Classify(err); !c.SinkFault() {
				t.Errorf("a connection failure is class %q, want a sink fault", c)
			}
		})
	}
}
