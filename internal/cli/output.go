package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	jmespath "github.com/jmespath-community/go-jmespath"
	"gopkg.in/yaml.v3"
)

// OutputHelp describes -o/--output, as every printing command takes it.
const OutputHelp = "output format: table, json, jsonc, yaml, tsv or none"

// Render writes v in format, as az does: table (header and rows), tsv
// (the rows alone, tab-separated), json (indented), jsonc (json,
// colored), yaml, or none. query, a JMESPath expression, is applied to
// v's JSON form first; a table or tsv of its result is built from it
// (objects: a column per key; scalars: one column).
func Render(w io.Writer, format, query string, v any, header string, rows [][]string) error {
	if !slices.Contains([]string{"table", "json", "jsonc", "yaml", "tsv", "none"}, format) {
		return fmt.Errorf("--output %q: use table, json, jsonc, yaml, tsv or none", format)
	}
	if query != "" {
		data, err := jsonForm(v)
		if err != nil {
			return err
		}
		if v, err = jmespath.Search(query, data); err != nil {
			return fmt.Errorf("--query %q: %w", query, err)
		}
		header, rows = tabulate(v)
	}
	switch format {
	case "none":
		return nil
	case "json", "jsonc":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if format == "jsonc" {
			b = colorJSON(b)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		data, err := jsonForm(v) // the JSON field names, not Go's
		if err != nil {
			return err
		}
		return yaml.NewEncoder(w).Encode(data)
	}
	if format == "tsv" {
		for _, r := range rows {
			if _, err := fmt.Fprintln(w, strings.Join(r, "\t")); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if header != "" {
		fmt.Fprintln(tw, header)
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// jsonForm is v as encoding/json's generic values.
func jsonForm(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

// tabulate makes a header and rows of a query's result: a list of
// objects gets a column per key (sorted), a list of scalars or a scalar
// one column, an object a row.
func tabulate(v any) (string, [][]string) {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	var keys []string
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			for k := range m {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
	}
	sort.Strings(keys)
	var rows [][]string
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok || len(keys) == 0 {
			rows = append(rows, []string{cell(e)})
			continue
		}
		row := make([]string, len(keys))
		for i, k := range keys {
			row[i] = cell(m[k])
		}
		rows = append(rows, row)
	}
	if len(keys) == 0 {
		return "RESULT", rows
	}
	head := make([]string, len(keys))
	for i, k := range keys {
		head[i] = strings.ToUpper(k)
	}
	return strings.Join(head, "\t"), rows
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64, bool:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// colorJSON colors keys and strings of indented JSON (jsonc, for a
// terminal): keys blue, strings green.
func colorJSON(b []byte) []byte {
	var out bytes.Buffer
	for line := range strings.SplitSeq(string(b), "\n") {
		if out.Len() > 0 {
			out.WriteByte('\n')
		}
		trimmed := strings.TrimLeft(line, " ")
		indent := line[:len(line)-len(trimmed)]
		if strings.HasPrefix(trimmed, `"`) {
			if key, rest, ok := strings.Cut(trimmed, `": `); ok {
				out.WriteString(indent + "\x1b[34m" + key + `"` + "\x1b[0m: " + colorValue(rest))
				continue
			}
		}
		out.WriteString(indent + colorValue(trimmed))
	}
	return out.Bytes()
}

func colorValue(s string) string {
	if strings.HasPrefix(s, `"`) {
		body := strings.TrimSuffix(s, ",")
		return "\x1b[32m" + body + "\x1b[0m" + s[len(body):]
	}
	return s
}
