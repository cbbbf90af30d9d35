package ocierr

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, c := range codes {
		t.Run(c.Name+" keeps its code, status and detail through the wire", func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, httptest.NewRequest("GET", "/v2/", nil), c.WithDetail("do this", map[string]string{"k": "v"}))
			resp := rec.Result()
			if resp.StatusCode != c.Status || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			got := Read(resp)
			if got.Code != c || got.Message != "do this" || fmt.Sprint(got.Detail) != "map[k:v]" {
				t.Fatalf("read back %+v", got)
			}
		})
	}
}

func TestFromAndIs(t *testing.T) {
	wrapped := fmt.Errorf("context: %w", BlobUnknown.Withf("blob %s", "x"))
	if e, coded := From(wrapped); !coded || e.Code != BlobUnknown {
		t.Fatalf("From lost the code: %+v", e)
	}
	if !BlobUnknown.Is(wrapped) || ManifestUnknown.Is(wrapped) {
		t.Fatal("Code.Is matched the wrong code")
	}
	if !errors.Is(wrapped, BlobUnknown) || errors.Is(wrapped, ManifestUnknown) {
		t.Fatal("errors.Is matched the wrong code")
	}
	e, coded := From(errors.New("disk on fire"))
	if coded || e.Code != Unknown || strings.Contains(e.Message, "fire") {
		t.Fatalf("an internal error leaked or got a code: %+v", e)
	}
}

func TestReadOfANonEnvelopeBody(t *testing.T) {
	resp := &http.Response{StatusCode: 401, Body: http.NoBody}
	if got := Read(resp); got.Code != Unauthorized {
		t.Fatalf("got %v", got.Code.Name)
	}
}
