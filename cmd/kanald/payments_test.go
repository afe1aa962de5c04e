package main

import (
	"io"
	"strings"
	"testing"
)

func TestPaymentSettingsRejected(t *testing.T) {
	const secret = "whsec_0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		env     map[string]string
		setting string
	}{
		{map[string]string{"KANAL_PSP_URL": "ftp://psp.example", "KANAL_PSP_API_KEY": "k", "KANAL_PSP_WEBHOOK_SECRET": secret}, "KANAL_PSP_URL"},
		{map[string]string{"KANAL_PSP_URL": "https://psp.example", "KANAL_PSP_WEBHOOK_SECRET": secret}, "KANAL_PSP_API_KEY"},
		{map[string]string{"KANAL_PSP_URL": "https://psp.example", "KANAL_PSP_API_KEY": "k", "KANAL_PSP_WEBHOOK_SECRET": "short"}, "KANAL_PSP_WEBHOOK_SECRET"},
		{map[string]string{"KANAL_PSP_WEBHOOK_SECRET": secret}, "KANAL_PSP_URL"},
	} {
		_, err := parseConfig(nil, envOf(c.env), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), c.setting+": ") {
			t.Errorf("%v: %v, want an error naming %s", c.env, err, c.setting)
		}
		// The secret never appears in the message.
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	c, err := parseConfig(nil, envOf(map[string]string{"KANAL_PSP_URL": "https://psp.example", "KANAL_PSP_API_KEY": "k", "KANAL_PSP_WEBHOOK_SECRET": secret}), io.Discard)
	if err != nil || c.PSPURL != "https://psp.example" {
		t.Fatalf("%+v %v", c, err)
	}
}
