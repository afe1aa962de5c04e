// Command bakery runs the example mini-app: the bakery's order page,
// signing citizens in through kanal. See docs/miniapps.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/kanal-server/kanal/miniapps/example/bakery"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bakery:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bakery", flag.ContinueOnError)
	var cfg bakery.Config
	addr := fs.String("addr", "127.0.0.1:9090", "address to listen on")
	fs.StringVar(&cfg.Issuer, "issuer", "http://127.0.0.1:8080/oidc", "kanal's OpenID issuer")
	fs.StringVar(&cfg.Kanal, "kanal", "http://127.0.0.1:8080", "kanald's URL, for the bridge")
	fs.StringVar(&cfg.ClientID, "client-id", "bakery", "the manifest's app_id")
	fs.StringVar(&cfg.ClientSecret, "client-secret", os.Getenv("BAKERY_CLIENT_SECRET"), "the client secret (default $BAKERY_CLIENT_SECRET)")
	fs.StringVar(&cfg.BaseURL, "base-url", "", "this app's origin as in the manifest (default http:// and -addr)")
	fs.StringVar(&cfg.Creditor, "creditor", "Bäckerei Korn", "the bakery's account holder")
	fs.StringVar(&cfg.IBAN, "iban", "DE02120300000000202051", "the bakery's IBAN")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + *addr
	}
	app, err := bakery.New(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bakery: listening on %s\n", cfg.BaseURL)
	return http.ListenAndServe(*addr, app.Handler())
}
