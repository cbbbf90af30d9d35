package encryption

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"
)

// KMSPlugin is a KeyService served by a Kubernetes KMS v2 plugin over
// gRPC on a Unix socket: the plugins clusters run for Azure Key Vault,
// AWS KMS, Vault or an HSM. Its key-encryption key never leaves the
// plugin's key service; a data key is wrapped by the plugin's Encrypt and
// unwrapped by its Decrypt, with the key id and annotations it returned.
type KMSPlugin struct {
	socket  string
	timeout time.Duration
	conn    *grpc.ClientConn
	client  kmsapi.KeyManagementServiceClient
}

// DefaultKMSTimeout bounds each call to a KMS plugin.
const DefaultKMSTimeout = 3 * time.Second

// OpenKMSPlugin connects (lazily: gRPC dials on first use and again
// after the plugin restarts) to the plugin listening on socket.
func OpenKMSPlugin(socket string, timeout time.Duration) (*KMSPlugin, error) {
	if timeout <= 0 {
		timeout = DefaultKMSTimeout
	}
	// Reconnect within seconds of a plugin's restart, however long it
	// was away (gRPC's default backoff grows to 2 minutes).
	conn, err := grpc.NewClient("unix://"+strings.TrimPrefix(socket, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: timeout,
		}))
	if err != nil {
		return nil, fmt.Errorf("KMS plugin at %s: %w", socket, err)
	}
	return &KMSPlugin{socket: socket, timeout: timeout, conn: conn, client: kmsapi.NewKeyManagementServiceClient(conn)}, nil
}

// Close closes the connection.
func (p *KMSPlugin) Close() error { return p.conn.Close() }

// Name names the plugin's socket.
func (p *KMSPlugin) Name() string { return "KMS plugin at " + p.socket }

// wrappedKMS is a data key as the plugin wrapped it, with the annotations
// it asked to be given back (stored in the region's keyring).
type wrappedKMS struct {
	Ciphertext  []byte            `json:"c"`
	Annotations map[string][]byte `json:"a,omitempty"`
}

func uid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Encrypt wraps plaintext under the plugin's current key.
func (p *KMSPlugin) Encrypt(ctx context.Context, plaintext []byte) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	res, err := p.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: plaintext, Uid: uid()})
	if err != nil {
		return nil, "", fmt.Errorf("%s: encrypt: %w", p.Name(), err)
	}
	if len(res.Ciphertext) == 0 || res.KeyId == "" {
		return nil, "", fmt.Errorf("%s: encrypt answered no ciphertext or no key id", p.Name())
	}
	b, err := json.Marshal(wrappedKMS{Ciphertext: res.Ciphertext, Annotations: res.Annotations})
	return b, res.KeyId, err
}

// Decrypt unwraps a data key the plugin wrapped under key keyID.
func (p *KMSPlugin) Decrypt(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	var w wrappedKMS
	if err := json.Unmarshal(wrapped, &w); err != nil {
		return nil, fmt.Errorf("a data key wrapped by a KMS plugin: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	res, err := p.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: w.Ciphertext, KeyId: keyID, Annotations: w.Annotations, Uid: uid()})
	if err != nil {
		return nil, fmt.Errorf("%s: decrypt under key %q: %w", p.Name(), keyID, err)
	}
	return res.Plaintext, nil
}

// Status asks the plugin for its health and current key id: an error
// when it does not answer, is not healthy or speaks another version.
func (p *KMSPlugin) Status(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	res, err := p.client.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		return "", fmt.Errorf("%s: status: %w", p.Name(), err)
	}
	return checkStatus(p.Name(), res.Version, res.Healthz, res.KeyId)
}

// checkStatus judges a KMS v2 Status answer.
func checkStatus(name, version, healthz, keyID string) (string, error) {
	switch {
	case version != "v2" && version != "v2beta1":
		return "", fmt.Errorf("%s speaks KMS API %q, want v2", name, version)
	case healthz != "ok":
		return "", fmt.Errorf("%s is not healthy: %s", name, healthz)
	case keyID == "":
		return "", errors.New(name + " names no current key")
	}
	return keyID, nil
}
