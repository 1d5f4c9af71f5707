package imap_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// go-imap's client, an independent implementation, drives a session.
func TestGoIMAPClient(t *testing.T) {
	e := start(t)
	user, pass := e.user(1)
	exists := make(chan uint32, 16)
	opts := &imapclient.Options{
		TLSConfig: e.tlsConfig(false),
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			},
		},
	}
	c, err := imapclient.DialTLS(e.addrs["imaps"], opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewPlainClient("", user, pass)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if !c.Caps().Has(goimap.CapIMAP4rev2) {
		t.Fatalf("capabilities %v lack IMAP4rev2", c.Caps())
	}
	if _, err := c.Enable(goimap.CapIMAP4rev2).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil || len(list) != 6 {
		t.Fatalf("LIST: %v %v", list, err)
	}

	msg := []byte("From: Bob <bob@localhost>\r\nSubject: hello\r\n\r\nbody text\r\n")
	ac := c.Append("INBOX", int64(len(msg)), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagDraft}})
	if _, err := ac.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := ac.Close(); err != nil {
		t.Fatal(err)
	}
	ad, err := ac.Wait()
	if err != nil || ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPEND: %+v %v", ad, err)
	}

	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 1 || sd.UIDValidity != ad.UIDValidity {
		t.Fatalf("SELECT: %+v %v", sd, err)
	}
	section := &goimap.FetchItemBodySection{}
	msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{
		Flags: true, UID: true, Envelope: true, RFC822Size: true,
		BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*goimap.FetchItemBodySection{section},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}
	m := msgs[0]
	if m.UID != 1 || m.Envelope.Subject != "hello" || m.RFC822Size != int64(len(msg)) ||
		!bytes.Equal(m.FindBodySection(section), msg) || !slices.Contains(m.Flags, goimap.FlagDraft) {
		t.Errorf("FETCH: %+v", m)
	}
	if bs, ok := m.BodyStructure.(*goimap.BodyStructureSinglePart); !ok || bs.Type != "TEXT" {
		t.Errorf("BODYSTRUCTURE: %#v", m.BodyStructure)
	}
	_, err = c.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagFlagged}, Silent: true}, nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	sr, err := c.UIDSearch(&goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagFlagged, goimap.FlagSeen}}, nil).Wait()
	if err != nil || !slices.Equal(sr.AllUIDs(), []goimap.UID{1}) {
		t.Fatalf("UID SEARCH: %v %v", sr, err)
	}

	// IDLE: another session's delivery arrives as EXISTS.
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	e.deliver(t, user, "INBOX", "Subject: second\r\n\r\nx\r\n")
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("EXISTS %d during IDLE, want 2", n)
		}
	case <-time.After(30 * time.Second): // a bound against hanging, not a timing assertion
		t.Fatal("no EXISTS during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	md, err := c.Move(goimap.SeqSetNum(1), "Archive").Wait()
	if err != nil || md.UIDValidity == 0 {
		t.Fatalf("MOVE: %+v %v", md, err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}
