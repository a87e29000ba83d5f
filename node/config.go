package node

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// FormatVersion is the on-disk format this code writes and reads.
const FormatVersion = 1

// ConfigFile is the name of a node's identity file inside its root.
const ConfigFile = "node.json"

// Errors callers branch on.
var (
	ErrNotVolume  = errors.New("node: not a DelugeFS volume")
	ErrWrongID    = errors.New("node: root belongs to another volume")
	ErrNotEmpty   = errors.New("node: root is not empty")
	ErrBadID      = errors.New("node: invalid volume id")
	ErrLocked     = errors.New("node: root is in use by another process")
	ErrNewVersion = errors.New("node: root was written by a newer DelugeFS")
	ErrBadKey     = errors.New("node: bad volume key")
)

var volumeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckVolumeID reports whether id can name a volume: 1 to 63 letters,
// digits, '.', '_' or '-', starting with a letter or digit (it travels in
// mDNS TXT records and URLs).
func CheckVolumeID(id string) error {
	if !volumeIDPattern.MatchString(id) {
		return fmt.Errorf("%w %q: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadID, id)
	}
	return nil
}

// Config is a node's identity, stored in ROOT/node.json.
type Config struct {
	Format    int       `json:"format"`
	NodeID    string    `json:"node_id"`    // random, stable: 16 hex digits
	VolumeID  string    `json:"volume_id"`  // the --id
	VolumeKey string    `json:"volume_key"` // base64 of 32 random bytes, shared by the volume's nodes
	Created   time.Time `json:"created"`
}

// CreateConfig makes a new volume's first node in root, which must be
// missing or empty.
func CreateConfig(root, volumeID string) (*Config, error) {
	if err := CheckVolumeID(volumeID); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("node: create root: %w", err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("node: read root: %w", err)
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s holds %d entries; --create needs an empty or missing directory", ErrNotEmpty, root, len(ents))
	}
	key := make([]byte, 32)
	id := make([]byte, 8)
	rand.Read(key)
	rand.Read(id)
	c := &Config{
		Format:    FormatVersion,
		NodeID:    hex.EncodeToString(id),
		VolumeID:  volumeID,
		VolumeKey: base64.StdEncoding.EncodeToString(key),
		Created:   time.Now().UTC().Truncate(time.Second),
	}
	return c, writeConfig(root, c)
}

// JoinConfig makes a new node of an existing volume in root, which must be
// missing or empty, given the volume's key.
func JoinConfig(root, volumeID, volumeKey string) (*Config, error) {
	if k, err := base64.StdEncoding.DecodeString(volumeKey); err != nil || len(k) < 16 {
		return nil, fmt.Errorf("%w: the volume key must be the base64 volume_key of another node's %s", ErrBadKey, ConfigFile)
	}
	c, err := CreateConfig(root, volumeID)
	if err != nil {
		return nil, err
	}
	c.VolumeKey = volumeKey
	return c, writeConfig(root, c)
}

// HasConfig reports whether root holds a node (a node.json).
func HasConfig(root string) bool {
	_, err := os.Stat(filepath.Join(root, ConfigFile))
	return err == nil
}

// LoadConfig reads root's identity and checks it belongs to volumeID (any
// volume if volumeID is empty).
func LoadConfig(root, volumeID string) (*Config, error) {
	data, err := os.ReadFile(filepath.Join(root, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s (use --create to make a new volume there)", ErrNotVolume, root, ConfigFile)
	}
	if err != nil {
		return nil, fmt.Errorf("node: read %s: %w", ConfigFile, err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotVolume, filepath.Join(root, ConfigFile), err)
	}
	switch {
	case c.Format > FormatVersion:
		return nil, fmt.Errorf("%w: format %d, this build reads up to %d", ErrNewVersion, c.Format, FormatVersion)
	case CheckVolumeID(c.VolumeID) != nil || len(c.NodeID) != 16:
		return nil, fmt.Errorf("%w: %s is damaged (volume %q, node %q)", ErrNotVolume, filepath.Join(root, ConfigFile), c.VolumeID, c.NodeID)
	case volumeID != "" && c.VolumeID != volumeID:
		return nil, fmt.Errorf("%w: %s holds volume %q, not %q", ErrWrongID, root, c.VolumeID, volumeID)
	}
	return &c, nil
}

// writeConfig writes node.json atomically and durably.
func writeConfig(root string, c *Config) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(root, ConfigFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("node: write %s: %w", ConfigFile, err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(root, ConfigFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("node: write %s: %w", ConfigFile, err)
	}
	return syncDir(root)
}
