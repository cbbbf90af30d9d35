package feed

import (
	"strings"
	"testing"
)

func FuzzParsePage(f *testing.F) {
	f.Add(`{"region":"eastus","head":2,"records":[{"seq":1,"kind":"blob","repo":"a","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","version":"5@eastus","created":"2026-01-01T00:00:00Z"},{"seq":2,"kind":"tag_delete","repo":"a","tag":"v1","version":"6@eastus","created":"2026-01-01T00:00:00Z"}]}`, int64(0))
	f.Add(`{"region":"x","head":0,"records":[]}`, int64(0))
	f.Add(`{"region":"x","head":1,"records":[{"seq":1,"kind":"setting","repo":"","tag":"brazilsouth","mediaType":"replica","version":"9@x","created":"2026-01-01T00:00:00Z","data":"eyJhIjoxfQ=="}]}`, int64(0))
	f.Add(`{"records":[{"seq":1,"kind":"nope"}]}`, int64(0))
	f.Fuzz(func(t *testing.T, body string, since int64) {
		p, err := ParsePage(strings.NewReader(body), since)
		if err != nil {
			return
		}
		last := since
		for _, r := range p.Records {
			if r.Validate() != nil || r.Seq <= last {
				t.Fatalf("accepted %+v after %d", r, last)
			}
			last = r.Seq
		}
	})
}
