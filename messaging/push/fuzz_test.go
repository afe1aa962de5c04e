package push_test

import (
	"testing"

	"github.com/kanal-server/kanal/messaging/push"
)

// FuzzValidate: any subscription either is refused or comes back in a
// canonical form that validates to itself.
func FuzzValidate(f *testing.F) {
	f.Add("https://fcm.googleapis.com/fcm/send/abc",
		"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4", "BTBZMqHH6r4Tts7J_aSIgg")
	f.Add("https://127.0.0.1/x", "BCVx==", "BTBZMqHH6r4Tts7J_aSIgg==")
	f.Add("http://[::1", "", "")
	allowed := push.HostList{"fcm.googleapis.com", "*.push.apple.com", "127.0.0.1"}
	f.Fuzz(func(t *testing.T, endpoint, p256dh, auth string) {
		req := push.SubscriptionRequest{Endpoint: endpoint, Keys: push.SubscriptionKeys{P256dh: p256dh, Auth: auth}}
		sub, err := req.Validate(allowed)
		if err != nil {
			return
		}
		again := push.SubscriptionRequest{Endpoint: sub.Endpoint, Keys: push.SubscriptionKeys{P256dh: sub.P256dh, Auth: sub.Auth}}
		sub2, err := again.Validate(allowed)
		if err != nil || sub2 != sub {
			t.Fatalf("canonical form %+v does not validate to itself: %+v %v", sub, sub2, err)
		}
		if len(sub.Endpoint) > push.MaxEndpoint || len(sub.Auth) != 22 || len(sub.P256dh) != 87 {
			t.Fatalf("accepted %+v", sub)
		}
	})
}
