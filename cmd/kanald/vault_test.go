package main

import (
	"io"
	"strings"
	"testing"
)

func TestVaultSettingsRejected(t *testing.T) {
	const secret = "s3-secret-0123456789"
	for _, c := range []struct {
		env     map[string]string
		setting string
	}{
		{map[string]string{"KANAL_VAULT_S3_URL": "ftp://s3.example/bucket", "KANAL_VAULT_S3_ACCESS_KEY": "a", "KANAL_VAULT_S3_SECRET_KEY": secret}, "KANAL_VAULT_S3_URL"},
		{map[string]string{"KANAL_VAULT_S3_URL": "https://s3.example", "KANAL_VAULT_S3_ACCESS_KEY": "a", "KANAL_VAULT_S3_SECRET_KEY": secret}, "KANAL_VAULT_S3_URL"},
		{map[string]string{"KANAL_VAULT_S3_URL": "https://a:" + secret + "@s3.example/b", "KANAL_VAULT_S3_ACCESS_KEY": "a", "KANAL_VAULT_S3_SECRET_KEY": secret}, "KANAL_VAULT_S3_URL"},
		{map[string]string{"KANAL_VAULT_S3_URL": "https://s3.example/b", "KANAL_VAULT_S3_SECRET_KEY": secret}, "KANAL_VAULT_S3_ACCESS_KEY"},
		{map[string]string{"KANAL_VAULT_S3_URL": "https://s3.example/b", "KANAL_VAULT_S3_ACCESS_KEY": "a"}, "KANAL_VAULT_S3_SECRET_KEY"},
		{map[string]string{"KANAL_VAULT_S3_SECRET_KEY": secret}, "KANAL_VAULT_S3_URL"},
		{map[string]string{"KANAL_VAULT_MAX_DOCUMENT": "12"}, "KANAL_VAULT_MAX_DOCUMENT"},
		{map[string]string{"KANAL_VAULT_QUOTA": "1000"}, "KANAL_VAULT_QUOTA"},
	} {
		_, err := parseConfig(nil, envOf(c.env), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), c.setting+": ") {
			t.Errorf("%v: %v, want an error naming %s", c.env, err, c.setting)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	c, err := parseConfig(nil, envOf(map[string]string{"KANAL_VAULT_S3_URL": "https://s3.example/kanal", "KANAL_VAULT_S3_ACCESS_KEY": "a",
		"KANAL_VAULT_S3_SECRET_KEY": secret, "KANAL_VAULT_MAX_DOCUMENT": "1048576", "KANAL_VAULT_QUOTA": "10485760"}), io.Discard)
	if err != nil || c.VaultS3URL != "https://s3.example/kanal" || c.VaultMaxDocument != 1<<20 || c.VaultQuota != 10<<20 {
		t.Fatalf("%+v %v", c, err)
	}
}
