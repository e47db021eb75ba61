package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is the part of a JetStream stream configuration that
// [EnsureStream] manages. Zero values take the defaults noted per field;
// settings of an existing stream that are not listed here are left alone.
type StreamConfig struct {
	// Name of the stream (required).
	Name string
	// Subjects captured by the stream. Default "<Name>.>".
	Subjects []string
	// Description, optional.
	Description string
	// Storage: file (default) or memory. Cannot be changed on an existing
	// stream.
	Storage jetstream.StorageType
	// Retention: limits (default), interest or work queue. Cannot be changed
	// on an existing stream.
	Retention jetstream.RetentionPolicy
	// MaxAge of messages; zero means unlimited.
	MaxAge time.Duration
	// MaxBytes of the stream; zero or negative means unlimited.
	MaxBytes int64
	// MaxMsgs in the stream; zero or negative means unlimited.
	MaxMsgs int64
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped;
	// zero means the server default (2 minutes, or MaxAge if shorter).
	Duplicates time.Duration
	// Replicas of the stream. Zero creates a new stream with 1 and leaves an
	// existing stream's replicas as they are (so that an instance configured
	// without it never shrinks a clustered R3 stream).
	Replicas int
}

func (c StreamConfig) withDefaults() StreamConfig {
	if len(c.Subjects) == 0 {
		c.Subjects = []string{c.Name + ".>"}
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = -1
	}
	if c.MaxMsgs <= 0 {
		c.MaxMsgs = -1
	}
	return c
}

func (c StreamConfig) validate() error {
	if !ValidName(c.Name) {
		return fmt.Errorf("%w: stream Name %q is not a valid stream name (required; no whitespace, '.', '*', '>', '/' or '\\')", ErrInvalidConfig, c.Name)
	}
	for _, s := range c.Subjects {
		if err := validSubject(s); err != nil {
			return fmt.Errorf("%w: stream %s: %w", ErrInvalidConfig, c.Name, err)
		}
	}
	if c.MaxAge < 0 || c.Duplicates < 0 {
		return fmt.Errorf("%w: stream %s: MaxAge and Duplicates must not be negative", ErrInvalidConfig, c.Name)
	}
	return nil
}

// StreamMismatchError says that an existing stream differs from the wanted
// configuration in a field JetStream cannot update. It matches
// [ErrStreamConfigMismatch].
type StreamMismatchError struct {
	Stream string
	Field  string
	Have   string
	Want   string
}

// Error names the stream, the field and both values.
func (e *StreamMismatchError) Error() string {
	return fmt.Sprintf("ponixnats: stream %s exists with %s=%s but %s=%s is wanted, and JetStream cannot change %s of an existing stream (delete or migrate the stream)",
		e.Stream, e.Field, e.Have, e.Field, e.Want, e.Field)
}

// Is matches ErrStreamConfigMismatch.
func (e *StreamMismatchError) Is(target error) bool { return target == ErrStreamConfigMismatch }

// EnsureStream makes sure the stream described by cfg exists: it creates it
// when missing; when it exists and a managed field differs, it updates the
// stream (subjects, description, max age/bytes/msgs, duplicate window,
// replicas) and returns a [*StreamMismatchError] for differences JetStream
// cannot apply (storage, retention).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ponixnats: ensure stream: %w", err)
	}
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		sc := jetstream.StreamConfig{
			Name:        cfg.Name,
			Description: cfg.Description,
			Subjects:    cfg.Subjects,
			Storage:     cfg.Storage,
			Retention:   cfg.Retention,
			MaxAge:      cfg.MaxAge,
			MaxBytes:    cfg.MaxBytes,
			MaxMsgs:     cfg.MaxMsgs,
			Duplicates:  cfg.Duplicates,
			Replicas:    max(cfg.Replicas, 1),
		}
		st, err = js.CreateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Created concurrently by someone else: check it like an existing one.
			return EnsureStream(ctx, js, cfg)
		}
		if err != nil {
			return nil, fmt.Errorf("ponixnats: creating stream %s (subjects %v): %w", cfg.Name, cfg.Subjects, err)
		}
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ponixnats: looking up stream %s: %w", cfg.Name, err)
	}

	have := st.CachedInfo().Config
	if have.Storage != cfg.Storage {
		return nil, &StreamMismatchError{Stream: cfg.Name, Field: "storage", Have: have.Storage.String(), Want: cfg.Storage.String()}
	}
	if have.Retention != cfg.Retention {
		return nil, &StreamMismatchError{Stream: cfg.Name, Field: "retention", Have: have.Retention.String(), Want: cfg.Retention.String()}
	}
	want := have
	want.Subjects = cfg.Subjects
	want.Description = cfg.Description
	want.MaxAge = cfg.MaxAge
	want.MaxBytes = cfg.MaxBytes
	want.MaxMsgs = cfg.MaxMsgs
	if cfg.Replicas > 0 {
		want.Replicas = cfg.Replicas
	}
	if cfg.Duplicates != 0 {
		want.Duplicates = cfg.Duplicates
	}
	changed := streamDiff(have, want)
	if len(changed) == 0 {
		return st, nil
	}
	st, err = js.UpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("ponixnats: updating stream %s (changed: %v): %w", cfg.Name, changed, err)
	}
	return st, nil
}

// streamDiff lists the managed fields that differ.
func streamDiff(a, b jetstream.StreamConfig) []string {
	var d []string
	if !slices.Equal(a.Subjects, b.Subjects) {
		d = append(d, "subjects")
	}
	if a.Description != b.Description {
		d = append(d, "description")
	}
	if a.MaxAge != b.MaxAge {
		d = append(d, "max_age")
	}
	if a.MaxBytes != b.MaxBytes {
		d = append(d, "max_bytes")
	}
	if a.MaxMsgs != b.MaxMsgs {
		d = append(d, "max_msgs")
	}
	if a.Duplicates != b.Duplicates {
		d = append(d, "duplicate_window")
	}
	if a.Replicas != b.Replicas {
		d = append(d, "replicas")
	}
	return d
}
