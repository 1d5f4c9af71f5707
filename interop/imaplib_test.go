package interop

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"
)

// mailDriver runs one scenario with Python's smtplib and imaplib, the
// clients of the Python standard library (OpenSSL underneath), and prints
// its findings as JSON. Its argument is a JSON object: scenario, host,
// ports (by dev listener name), ca, user, password, and the scenario's
// own keys. Certificates are verified against the dev CA only.
const mailDriver = `
import base64, email.message, imaplib, json, re, smtplib, ssl, sys

a = json.loads(sys.argv[1])

def ctx():
    return ssl.create_default_context(cafile=a["ca"])

def s(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [s(x) for x in v]
    return v

def b64(b):
    return base64.b64encode(b).decode()

def msg(frm, to, subject):
    m = email.message.EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    m.set_content("hello from smtplib\n")
    return m

def smtp_error(f):
    try:
        f()
        return None
    except smtplib.SMTPResponseException as e:
        return [e.smtp_code, s(e.smtp_error)]
    except smtplib.SMTPRecipientsRefused as e:
        return [[v[0], s(v[1])] for v in e.recipients.values()][0]

def submit():
    out = {}
    # Implicit TLS (RFC 8314 3.3), AUTH PLAIN.
    c = smtplib.SMTP_SSL(a["host"], a["ports"]["submissions"], context=ctx(), timeout=30)
    c.ehlo()
    out["tls"] = c.sock.version()
    out["auth"] = c.esmtp_features.get("auth", "").split()
    c.user, c.password = a["user"], a["password"]
    out["plain"] = s(list(c.auth("PLAIN", c.auth_plain)))
    out["plain_refused"] = c.send_message(msg(a["user"], a["rcpt"], "via submissions PLAIN"))
    # RFC 6409 6.1: the envelope and From: are checked against the login.
    out["forged"] = smtp_error(lambda: c.send_message(msg(a["rcpt"], a["rcpt"], "forged"), from_addr=a["rcpt"]))
    c.quit()
    # Implicit TLS, AUTH LOGIN.
    c = smtplib.SMTP_SSL(a["host"], a["ports"]["submissions"], context=ctx(), timeout=30)
    c.ehlo()
    c.user, c.password = a["user"], a["password"]
    out["login"] = s(list(c.auth("LOGIN", c.auth_login, initial_response_ok=False)))
    out["login_refused"] = c.send_message(msg(a["user"], a["rcpt"], "via submissions LOGIN"))
    c.quit()
    # STARTTLS (RFC 3207), then smtplib's own choice of mechanism.
    c = smtplib.SMTP(a["host"], a["ports"]["submission"], timeout=30)
    c.ehlo()
    out["features_before"] = sorted(c.esmtp_features)
    c.starttls(context=ctx())
    c.ehlo()
    out["features_after"] = sorted(c.esmtp_features)
    out["starttls_tls"] = c.sock.version()
    out["starttls_login"] = s(list(c.login(a["user"], a["password"])))
    out["starttls_refused"] = c.send_message(msg(a["user"], a["rcpt"], "via submission STARTTLS"))
    c.quit()
    return out

def smtp_cleartext():
    # AUTH where STARTTLS should have come first. smtplib's login() would
    # not even try, since AUTH is not offered, so the command is sent as is.
    out = []
    for pw in a["passwords"]:
        c = smtplib.SMTP(a["host"], a["ports"]["submission"], timeout=30)
        c.ehlo()
        ir = b64(("\0%s\0%s" % (a["user"], pw)).encode())
        out.append(s(list(c.docmd("AUTH", "PLAIN " + ir))))
        c.quit()
    return {"answers": out}

def imap_login():
    m = imaplib.IMAP4_SSL(a["host"], a["ports"]["imaps"], ssl_context=ctx(), timeout=30)
    m.login(a["user"], a["password"])
    return m

def inbox():
    m = imap_login()
    m.select("INBOX", readonly=True)
    typ, d = m.search(None, "ALL")
    out = []
    for n in d[0].split():
        typ, d = m.fetch(n, "(BODY.PEEK[])")
        out.append(b64(d[0][1]))
    m.logout()
    return {"messages": out}

def imap():
    out = {}
    m = imaplib.IMAP4_SSL(a["host"], a["ports"]["imaps"], ssl_context=ctx(), timeout=30)
    out["tls"] = m.sock.version()
    m.login(a["user"], a["password"])
    typ, d = m.capability()
    out["caps"] = s(d[-1]).split()
    typ, d = m.list()
    out["list"] = s(d)
    typ, d = m.select("INBOX")
    out["select"] = [typ, s(d)]
    raw = a["append"].encode()
    typ, d = m.append("INBOX", None, None, raw)
    out["append"] = [typ, s(d)]
    uid = re.search(rb"APPENDUID [0-9]+ ([0-9]+)", d[0]).group(1).decode()
    typ, d = m.uid("FETCH", uid, "(BODY.PEEK[])")
    out["body"] = b64(d[0][1])
    typ, d = m.search(None, "UNSEEN")
    out["unseen"] = s(d[0]).split()
    typ, d = m.search(None, "SUBJECT", '"%s"' % a["subject"])
    out["search_subject"] = s(d[0]).split()
    typ, d = m.uid("FETCH", uid, "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out["meta"] = s(d[0][0])
    out["meta_subject"] = s(d[0][1])
    typ, d = m.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    out["store"] = [typ, s(d)]
    typ, d = m.search(None, "UNSEEN")
    out["unseen_after"] = s(d[0]).split()
    typ, d = m.uid("COPY", uid, "Archive")
    out["copy"] = [typ, s(m.response("COPYUID")[1])]
    typ, d = m._simple_command("UID", "MOVE", uid, "Trash")
    out["move"] = [typ, s(d), s(m.response("EXPUNGE")[1])]
    out["status"] = {}
    for mb in ["INBOX", "Archive", "Trash"]:
        typ, d = m.status(mb, "(MESSAGES)")
        out["status"][mb] = s(d[0])
    m.select("Archive")
    m.store("1:*", "+FLAGS", "(\\Deleted)")
    typ, d = m.expunge()
    out["expunge"] = [typ, s(d)]
    typ, d = m.status("Archive", "(MESSAGES)")
    out["status_after_expunge"] = s(d[0])
    m.select("INBOX")
    out["idle"] = idle(m)
    typ, d = m.logout()
    out["logout"] = typ
    return out

def line(m):
    l = m.readline()
    if not l:
        raise EOFError("connection closed")
    return s(l).rstrip("\r\n")

def idle(m):
    # imaplib has no IDLE: the command is written and read raw (RFC 2177).
    out = {}
    tag = s(m._new_tag())
    m.send(("%s IDLE\r\n" % tag).encode())
    out["continuation"] = line(m)
    other = imap_login()
    other.append("INBOX", None, None, a["append"].replace("Subject: ", "Subject: idle ").encode())
    other.logout()
    out["untagged"] = []
    for _ in range(20):
        l = line(m)
        out["untagged"].append(l)
        if l.endswith(" EXISTS"):
            break
    m.send(b"DONE\r\n")
    for _ in range(20):
        l = line(m)
        if l.startswith(tag + " "):
            out["done"] = l[len(tag) + 1:]
            break
    return out

def imap_starttls():
    out = {}
    m = imaplib.IMAP4(a["host"], a["ports"]["imap"], timeout=30)
    out["caps_before"] = list(m.capabilities)
    m.starttls(ssl_context=ctx())
    out["tls"] = m.sock.version()
    out["caps_after"] = list(m.capabilities)
    out["login"] = s(list(m.login(a["user"], a["password"])))
    out["select"] = m.select("INBOX")[0]
    m.logout()
    return out

def imap_cleartext():
    out = []
    for pw in a["passwords"]:
        m = imaplib.IMAP4(a["host"], a["ports"]["imap"], timeout=30)
        try:
            m.login(a["user"], pw)
            out.append("logged in")
        except imaplib.IMAP4.error as e:
            out.append(str(e))
        m.shutdown()
    return {"errors": out}

def imap_ops():
    # a["ops"]: ["append", mailbox, message], ["flag", mailbox, subject,
    # flag] or ["dump", mailbox], whose result is [flags, Subject field]
    # for each message.
    m = imap_login()
    out = []
    for op in a["ops"]:
        if op[0] == "append":
            typ, d = m.append(op[1], None, None, op[2].encode())
            out.append(typ)
        elif op[0] == "flag":
            m.select(op[1])
            typ, d = m.uid("SEARCH", "SUBJECT", '"%s"' % op[2])
            uids = s(d[0]).split()
            typ, d = m.uid("STORE", ",".join(uids), "+FLAGS", "(%s)" % op[3])
            out.append([typ, len(uids)])
        elif op[0] == "dump":
            m.select(op[1], readonly=True)
            typ, d = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            msgs = []
            for item in d:
                if isinstance(item, tuple):
                    flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1)
                    msgs.append([s(flags), s(item[1]).strip()])
            out.append(msgs)
    m.logout()
    return {"results": out}

print(json.dumps(globals()[a["scenario"]]()))
`

// mailpy runs a mailDriver scenario and decodes its JSON answer into out.
func mailpy(t *testing.T, args map[string]any, out any) {
	t.Helper()
	python := program(t, "python3", "python3")
	enc, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "", python, "-c", mailDriver, string(enc))
	if r.code != 0 {
		t.Fatalf("python3 %s: %s", args["scenario"], r)
	}
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		t.Fatalf("python3 %s: %v\n%s", args["scenario"], err, r)
	}
}

// mailArgs are the mailDriver arguments for an account on a dev server:
// every listener's port, by name, on its IP address, which the dev
// certificate names too.
func mailArgs(t *testing.T, d *devServer, acct devAccount, scenario string) map[string]any {
	t.Helper()
	ports := map[string]int{}
	host := ""
	for name, addr := range d.info.Listeners {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		host = h
		ports[name], _ = strconv.Atoi(p)
	}
	return map[string]any{
		"scenario": scenario, "host": host, "ports": ports, "ca": d.info.CACert,
		"user": acct.Username, "password": acct.Password,
	}
}
