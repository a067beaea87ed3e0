// Command echo is the backend the end-to-end test (tests/node.rs) runs on
// the testenv's real node: every request is answered with what it was (its
// method, path, headers and body) as JSON, so a test sees what a router
// sent; /healthz answers ok. node.sh builds it into a FROM-scratch image.
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok") // nolint:errcheck
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		headers := map[string]string{}
		for name := range r.Header {
			headers[name] = r.Header.Get(name)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{ // nolint:errcheck
			"method":  r.Method,
			"path":    r.URL.Path,
			"headers": headers,
			"body":    string(body),
		})
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
