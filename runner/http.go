package runner

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// HTTPServer returns a process that serves srv on its Addr until ctx ends, then shuts it down
// gracefully, giving requests in flight up to grace to finish. A listener that cannot be
// opened (the address is taken, say) is the process's error.
func HTTPServer(srv *http.Server, grace time.Duration) Func {
	return func(ctx context.Context) error {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			return err
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		select {
		case err := <-served:
			return err // Serve returns only on a failure: ctx has not ended
		case <-ctx.Done():
		}
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		err = srv.Shutdown(shutdownCtx)
		if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
		return err
	}
}
