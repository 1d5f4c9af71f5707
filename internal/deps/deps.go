package deps
import (
	_ "modernc.org/sqlite"
	_ "github.com/BurntSushi/toml"
	_ "golang.org/x/crypto/argon2"
	_ "github.com/pires/go-proxyproto"
	_ "github.com/xdg-go/scram"
	_ "github.com/emersion/go-sasl"
)
