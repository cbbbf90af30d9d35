package main

import "testing"

// TestAnExportedWebhookURIKeepsNoQueryToken: config export writes a
// webhook's query values as ${ENV} references, and apply reads them back.
func TestAnExportedWebhookURIKeepsNoQueryToken(t *testing.T) {
	got := exportedURI("ci-hook", "https://hooks.example.com/in?token=s3cr3t&a=b")
	want := "https://hooks.example.com/in?a=${GEOREG_WEBHOOK_CI_HOOK_URI_A}&token=${GEOREG_WEBHOOK_CI_HOOK_URI_TOKEN}"
	if got != want {
		t.Fatalf("exported %q, want %q", got, want)
	}
	if plain := exportedURI("h", "https://hooks.example.com/in"); plain != "https://hooks.example.com/in" {
		t.Fatalf("a URI without a query: %q", plain)
	}
	t.Setenv("GEOREG_WEBHOOK_CI_HOOK_URI_A", "b")
	t.Setenv("GEOREG_WEBHOOK_CI_HOOK_URI_TOKEN", "s3cr3t")
	if back, err := expand(got); err != nil || back != "https://hooks.example.com/in?a=b&token=s3cr3t" {
		t.Fatalf("applied back: %q %v", back, err)
	}
}
