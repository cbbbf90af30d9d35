package region

import "io"

// HoldLast passes every byte written to W on but the last, which it
// holds until Release: a client streamed a blob that then fails its
// digest check never gets a whole body (the handler breaks the
// connection one byte short of the length it announced), so wrong bytes
// from a peer never reach it as a complete response (invariant 1).
type HoldLast struct {
	W    io.Writer
	last byte
	held bool
}

func (h *HoldLast) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if h.held {
		if _, err := h.W.Write([]byte{h.last}); err != nil {
			return 0, err
		}
	}
	if _, err := h.W.Write(p[:len(p)-1]); err != nil {
		return 0, err
	}
	h.last, h.held = p[len(p)-1], true
	return len(p), nil
}

// Release writes the byte held back, if any.
func (h *HoldLast) Release() error {
	if !h.held {
		return nil
	}
	h.held = false
	_, err := h.W.Write([]byte{h.last})
	return err
}

// LazyWriter calls Start on the first write.
type LazyWriter struct {
	Start func() io.Writer
	W     io.Writer
}

func (l *LazyWriter) Write(p []byte) (int, error) {
	if l.W == nil {
		l.W = l.Start()
	}
	return l.W.Write(p)
}
