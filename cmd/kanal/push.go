package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/messaging/push"
)

// The push commands register this device's Web Push subscription, the
// way a browser would: for testing a push service, or a device whose
// notifications arrive elsewhere. kanald then sends an empty, encrypted
// "something arrived" push to the endpoint whenever this device's mailbox
// gets an envelope while no stream of it is open.

type pushOpts struct {
	p256dh, auth, file string
}

func pushCommands() []*command {
	var po pushOpts
	return []*command{
		{
			name: "push subscribe", args: "[--p256dh KEY --auth SECRET | --json FILE] [endpoint]", nargs: -1,
			summary: "register this device's Web Push subscription (for testing)",
			help: `Give the push service's endpoint (https://…) with the subscription's keys,
or --json with a browser's PushSubscription.toJSON() (- for standard
input). Without keys, kanal makes a fresh P-256 key and auth secret and
prints them, so that a test push service can decrypt what it receives.
A new subscription replaces this device's old one. The server accepts
only push services the operator allows (KANAL_PUSH_HOSTS).`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&po.p256dh, "p256dh", "", "the subscription's public `key` (base64url P-256 point)")
				fs.StringVar(&po.auth, "auth", "", "the subscription's auth `secret` (base64url, 16 bytes)")
				fs.StringVar(&po.file, "json", "", "read the subscription from this JSON `file` (- for standard input)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return pushSubscribe(ctx, c, o, &po, args)
			},
		},
		{
			name: "push show", nargs: 0,
			summary: "show this device's push endpoint and the server's VAPID key",
			run:     pushShow,
		},
		{
			name: "push unsubscribe", nargs: 0,
			summary: "remove this device's push subscription",
			run:     pushUnsubscribe,
		},
	}
}

// pushCall is one request to the push routes with this device's session.
func (c *cli) pushCall(ctx context.Context, o *opts, method, path string, in, out any, want ...int) (int, error) {
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return 0, err
	}
	base := strings.TrimRight(c.serverURL(o, st), "/")
	req, err := apiclient.NewRequest(ctx, method, base+path, in, st.Data.SessionToken)
	if err != nil {
		return 0, err
	}
	resp, err := apiclient.Do(http.DefaultClient, req, base)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, 64<<10)
	if err != nil {
		return 0, err
	}
	for _, w := range want {
		if resp.StatusCode == w {
			if out == nil || len(b) == 0 {
				return w, nil
			}
			return w, apiclient.DecodeStrict(b, out)
		}
	}
	return resp.StatusCode, (*idclient.Problem)(apiclient.ProblemOf(resp, b))
}

func pushSubscribe(ctx context.Context, c *cli, o *opts, po *pushOpts, args []string) error {
	var req push.SubscriptionRequest
	switch {
	case po.file != "" && (len(args) > 0 || po.p256dh != "" || po.auth != ""):
		return &usageError{cmd: "push subscribe", msg: "--json holds the whole subscription: give no endpoint or keys with it"}
	case po.file != "":
		b, err := c.readInput(po.file)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &req); err != nil {
			return fmt.Errorf("%s is not a push subscription in JSON: %v", po.file, err)
		}
	case len(args) != 1:
		return &usageError{cmd: "push subscribe", msg: "give the push service's endpoint, or --json FILE"}
	case (po.p256dh == "") != (po.auth == ""):
		return &usageError{cmd: "push subscribe", msg: "give both --p256dh and --auth, or neither"}
	default:
		req.Endpoint, req.Keys = args[0], push.SubscriptionKeys{P256dh: po.p256dh, Auth: po.auth}
		if po.p256dh == "" {
			k, err := ecdh.P256().GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			auth := make([]byte, 16)
			if _, err := io.ReadFull(rand.Reader, auth); err != nil {
				return err
			}
			enc := base64.RawURLEncoding.EncodeToString
			req.Keys = push.SubscriptionKeys{P256dh: enc(k.PublicKey().Bytes()), Auth: enc(auth)}
			fmt.Fprintf(c.stdout, "Made a subscription key for testing; a test push service decrypts with:\n  private key %s\n  auth        %s\n", enc(k.Bytes()), req.Keys.Auth)
		}
	}
	var out push.SubscriptionResponse
	status, err := c.pushCall(ctx, o, http.MethodPut, "/v1/push/subscription", &req, &out, http.StatusCreated, http.StatusOK)
	if err != nil {
		return err
	}
	if status == http.StatusOK {
		fmt.Fprintf(c.stdout, "Replaced this device's push subscription: pushes go to %s.\n", oneLine(out.Endpoint))
	} else {
		fmt.Fprintf(c.stdout, "Subscribed: pushes for this device go to %s.\n", oneLine(out.Endpoint))
	}
	return nil
}

func pushShow(ctx context.Context, c *cli, o *opts, _ []string) error {
	var key push.VAPIDKeyResponse
	if _, err := c.pushCall(ctx, o, http.MethodGet, "/v1/push/vapid-key", nil, &key, http.StatusOK); err != nil {
		return err
	}
	var sub push.SubscriptionResponse
	_, err := c.pushCall(ctx, o, http.MethodGet, "/v1/push/subscription", nil, &sub, http.StatusOK)
	var p *idclient.Problem
	switch {
	case errors.As(err, &p) && p.Status == http.StatusNotFound:
		fmt.Fprintln(c.stdout, "endpoint   none: this device has no push subscription ('kanal push subscribe' adds one)")
	case err != nil:
		return err
	default:
		fmt.Fprintf(c.stdout, "endpoint   %s\n", oneLine(sub.Endpoint))
	}
	fmt.Fprintf(c.stdout, "vapid key  %s\n", key.PublicKey)
	return nil
}

func pushUnsubscribe(ctx context.Context, c *cli, o *opts, _ []string) error {
	if _, err := c.pushCall(ctx, o, http.MethodDelete, "/v1/push/subscription", nil, nil, http.StatusNoContent); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "This device has no push subscription now.")
	return nil
}
