package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// tokenLabel is the HMAC message a token is derived with; changing it
// changes every token (a new API version).
const tokenLabel = "delugefs-api-v1"

// DefaultUser is the HTTP Basic user name clients send. The server accepts
// any user name: only the password (the token) is checked.
const DefaultUser = "delugefs"

// minKeyLen is the shortest volume key accepted, in bytes.
const minKeyLen = 16

// ErrBadKey is returned for a volume key that is not base64 of at least 16
// bytes.
var ErrBadKey = errors.New("api: bad volume key")

// Token returns the API token of a volume: base64url (no padding) of
// HMAC-SHA256(key, "delugefs-api-v1"), where key is the volume key decoded
// from its base64 form in node.json. Every node of the volume derives the
// same token; it is the HTTP Basic password of every request.
func Token(volumeKey string) (string, error) {
	key, err := decodeKey(volumeKey)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenLabel))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			if len(key) < minKeyLen {
				return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrBadKey, len(key), minKeyLen)
			}
			return key, nil
		}
	}
	return nil, fmt.Errorf("%w: not base64", ErrBadKey)
}

// maxPassword bounds the Basic password compared (tokens are 43 bytes).
const maxPassword = 256

// password returns the Basic auth password of r, or "" when absent.
func password(r *http.Request) string {
	_, pw, ok := r.BasicAuth()
	if !ok || len(pw) > maxPassword {
		return ""
	}
	return pw
}

// tokenEqual compares a presented password with a token in constant time
// (the length of tokens is public).
func tokenEqual(presented, token string) bool {
	return presented != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(token)) == 1
}

// unauthorized answers 401 with no details, and the challenge git's HTTP
// client (libcurl) needs before it sends credentials from the URL or a
// credential helper.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="delugefs"`)
	writeError(w, http.StatusUnauthorized, "unauthorized")
}
