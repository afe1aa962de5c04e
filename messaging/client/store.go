package client

import (
	"errors"
	"maps"
	"sync"

	"github.com/kanal-server/kanal/identity/keystore"
)

// ErrNotFound is returned by Store.Get for a name that holds nothing.
var ErrNotFound = errors.New("messaging/client: not found in store")

// Store keeps the SDK's secret state by name: the identity key, private
// prekeys and sessions. Values are secret. Put and Delete must be durable
// when they return.
type Store interface {
	Get(name string) ([]byte, error) // ErrNotFound when absent
	Put(name string, value []byte) error
	Delete(name string) error
}

// BatchStore is a Store that can write many values at once, durably and
// all or nothing. Publish and Replenish use it, when the Store offers it,
// to save a batch of private prekeys in one write.
type BatchStore interface {
	Store
	PutAll(values map[string][]byte) error
}

// MemoryStore is a Store in memory, for tests and examples.
type MemoryStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[string][]byte{}} }

func (s *MemoryStore) Get(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[name]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (s *MemoryStore) Put(name string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = append([]byte(nil), value...)
	return nil
}

func (s *MemoryStore) PutAll(values map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range values {
		s.m[k] = append([]byte(nil), v...)
	}
	return nil
}

func (s *MemoryStore) Delete(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, name)
	return nil
}

// KeystoreStore keeps the state in the Secrets map of the CLI's encrypted
// key store, under names starting with "e2e/", and saves the key store
// after every change. A save costs one argon2id derivation, which is what
// keeping a ratchet step durable costs there.
type KeystoreStore struct {
	mu sync.Mutex
	ks *keystore.Store
}

// NewKeystoreStore returns a Store over ks. Others may change ks's
// secrets beside the SDK only through ks.Update (the CLI's chat does).
func NewKeystoreStore(ks *keystore.Store) *KeystoreStore { return &KeystoreStore{ks: ks} }

const keystorePrefix = "e2e/"

func (s *KeystoreStore) Get(name string) ([]byte, error) {
	v, ok := s.ks.Secret(keystorePrefix + name)
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

func (s *KeystoreStore) Put(name string, value []byte) error {
	return s.change(func(m map[string][]byte) { m[keystorePrefix+name] = append([]byte(nil), value...) })
}

// PutAll writes values with one save of the key store.
func (s *KeystoreStore) PutAll(values map[string][]byte) error {
	return s.change(func(m map[string][]byte) {
		for k, v := range values {
			m[keystorePrefix+k] = append([]byte(nil), v...)
		}
	})
}

func (s *KeystoreStore) Delete(name string) error {
	return s.change(func(m map[string][]byte) { delete(m, keystorePrefix+name) })
}

// change applies f and saves; if the save fails the map is put back, so
// memory never claims what the disk does not hold.
func (s *KeystoreStore) change(f func(map[string][]byte)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old map[string][]byte
	s.ks.Update(func(d *keystore.Data) {
		old = maps.Clone(d.Secrets)
		if d.Secrets == nil {
			d.Secrets = map[string][]byte{}
		}
		f(d.Secrets)
	})
	if err := s.ks.Save(); err != nil {
		s.ks.Update(func(d *keystore.Data) { d.Secrets = old })
		return err
	}
	return nil
}
