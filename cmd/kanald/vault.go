package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/vault"
)

// mountVault builds the vault service on its blob store and registers its
// routes.
func mountVault(mux *http.ServeMux, cfg *config, log *slog.Logger, d *db.DB, ident *identity.Service, msg *messaging.Service) (*vault.Service, error) {
	blobs, err := vaultBlobs(cfg, log)
	if err != nil {
		return nil, err
	}
	s, err := vault.New(vault.Options{DB: d, Blobs: blobs, Logger: log, Directory: vaultDirectory{ident},
		MaxDocument: cfg.VaultMaxDocument, Quota: cfg.VaultQuota,
		Conversations: vaultConversations{ident}, Notifier: vaultNotices{msg}})
	if err != nil {
		return nil, err
	}
	s.Register(mux, vault.Auth{
		Session: func(h http.Handler) http.Handler { return ident.RequireSession(ca.LevelLow, h) },
		Caller: func(ctx context.Context) (vault.Actor, bool) {
			p, ok := identity.FromContext(ctx)
			return vault.Actor{AccountID: p.AccountID, DeviceID: p.DeviceID}, ok
		},
	})
	// A revoked device's wrapped keys go with it, in the revoking
	// transaction.
	ident.AddRevocationHook(vault.DeleteDeviceKeys)
	return s, nil
}

// vaultBlobs is the vault's blob store: an S3-compatible object store
// when KANAL_VAULT_S3_URL is set, <data-dir>/vault otherwise.
func vaultBlobs(cfg *config, log *slog.Logger) (vault.Blobs, error) {
	if cfg.VaultS3URL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := vault.NewS3Blobs(ctx, vault.S3Options{URL: cfg.VaultS3URL, AccessKey: cfg.VaultS3Access, SecretKey: cfg.VaultS3Secret})
		if err != nil {
			return nil, &settingError{"KANAL_VAULT_S3_URL", err}
		}
		log.Info("vault documents in an S3-compatible store", "url", cfg.VaultS3URL)
		return b, nil
	}
	b, err := vault.NewDirBlobs(filepath.Join(cfg.DataDir, "vault"))
	if err != nil {
		return nil, &settingError{"KANAL_DATA_DIR", err}
	}
	return b, nil
}

// vaultDirectory answers the vault's questions from identity.
type vaultDirectory struct{ s *identity.Service }

func (v vaultDirectory) AccountDevices(ctx context.Context, account string) ([]string, error) {
	ds, err := v.s.AccountDevices(ctx, account)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.DeviceID
	}
	return out, nil
}

func (v vaultDirectory) OrgRole(ctx context.Context, org, account string) (string, error) {
	return v.s.OrgRole(ctx, org, account)
}

// vaultConversations says whether a conversation is the owner's direct
// conversation with an account that has devices, or an organisation's
// (one that exists) with the owner.
type vaultConversations struct{ s *identity.Service }

func (v vaultConversations) Between(ctx context.Context, conv, owner, account, org string) (bool, error) {
	if account != "" {
		if conv != messaging.DirectConversation(owner, account) {
			return false, nil
		}
		ds, err := v.s.AccountDevices(ctx, account)
		return len(ds) > 0, err
	}
	if conv != messaging.OrgConversation(org, owner) {
		return false, nil
	}
	_, _, err := v.s.OrgAgents(ctx, org)
	if errors.Is(err, identity.ErrUnknownOrg) {
		return false, nil
	}
	return err == nil, err
}

// vaultNotices tells a withdrawn share's recipients, in the share's
// conversation, with a signed document.withdrawn notice.
type vaultNotices struct{ m *messaging.Service }

func (n vaultNotices) Withdrawn(ctx context.Context, s vault.Share) error {
	msg, err := kind.New("kanal-vault-"+s.ID+"-withdrawn", time.Now(),
		&kind.DocumentWithdrawnBody{ShareID: s.ID, DocumentID: s.DocumentID, Version: s.Version, Owner: s.Owner})
	if err != nil {
		return err
	}
	raw, err := msg.Marshal()
	if err != nil {
		return err
	}
	nt := messaging.Notice{Conversation: s.Conversation, Message: raw}
	if s.Org != "" {
		nt.OrgID = s.Org
	} else {
		nt.Accounts = []string{s.Account}
	}
	return n.m.PostNotice(ctx, nt)
}
