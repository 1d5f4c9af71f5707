package auth

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// credCache remembers credentials verified recently, so that a mail app
// that reconnects every few minutes does not pay an argon2id verification
// each time. It never holds a password: entries are keyed by an HMAC of
// user and password under a key that lives only in this process's memory.
// An entry stays valid only while the account's stored hash is the one it
// was verified against, so a password change (made by any process)
// invalidates it at once. Size and age are bounded.
type credCache struct {
	key []byte
	ttl time.Duration
	max int

	mu      sync.Mutex // guards entries and lru
	entries map[[32]byte]*list.Element
	lru     *list.List // of *cacheEntry, most recently used first
}

type cacheEntry struct {
	id      [32]byte
	hash    string // the stored PHC hash the password was verified against
	expires time.Time
}

func newCredCache(max int, ttl time.Duration) *credCache {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("auth: no randomness for the credential cache key: " + err.Error())
	}
	return &credCache{key: key, ttl: ttl, max: max, entries: make(map[[32]byte]*list.Element), lru: list.New()}
}

func (c *credCache) id(user, password string) [32]byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var id [32]byte
	m.Sum(id[:0])
	return id
}

// hit reports whether user and password were verified against storedHash
// within the TTL.
func (c *credCache) hit(user, password, storedHash string, now time.Time) bool {
	if c.max <= 0 {
		return false
	}
	id := c.id(user, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[id]
	if !ok {
		return false
	}
	e := el.Value.(*cacheEntry)
	if now.After(e.expires) || !hmac.Equal([]byte(e.hash), []byte(storedHash)) {
		c.lru.Remove(el)
		delete(c.entries, id)
		return false
	}
	c.lru.MoveToFront(el)
	return true
}

// add remembers a successful verification.
func (c *credCache) add(user, password, storedHash string, now time.Time) {
	if c.max <= 0 {
		return
	}
	id := c.id(user, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[id]; ok {
		c.lru.Remove(el)
	}
	c.entries[id] = c.lru.PushFront(&cacheEntry{id: id, hash: storedHash, expires: now.Add(c.ttl)})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).id)
	}
}
