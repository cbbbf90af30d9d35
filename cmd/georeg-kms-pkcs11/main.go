// Command georeg-kms-pkcs11 is a Kubernetes KMS v2 plugin over a PKCS#11
// token (an HSM, or SoftHSM2): it wraps and unwraps data keys with an
// AES-256 key that never leaves the token, answering on a Unix socket.
// A georeg region (region.encryption.provider: kms) or a Kubernetes API
// server can use it.
//
// The current key is named by its label (--key-label), which is also the
// key id the plugin answers: rotating is restarting the plugin with a new
// label (--create-key makes the key in the token when it is missing);
// older keys stay in the token to unwrap what they wrapped.
package main

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/spf13/cobra"
	"k8s.io/kms/pkg/service"
)

func main() {
	var (
		socket, module, token, pinEnv, label string
		create                               bool
		timeout                              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "georeg-kms-pkcs11",
		Short: "A Kubernetes KMS v2 plugin over a PKCS#11 token",
		Long: `georeg-kms-pkcs11 serves the Kubernetes KMS v2 plugin API on a Unix socket,
wrapping data keys with an AES-256 key kept in a PKCS#11 token (an HSM, or SoftHSM2).
The token's PIN is read from the environment variable --pin-env names.`,
		Example:      `  KMS_PKCS11_PIN=1234 georeg-kms-pkcs11 --socket /run/georeg/kms.sock --token georeg --key-label georeg-kek-1 --create-key`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pin := os.Getenv(pinEnv)
			if pin == "" {
				return fmt.Errorf("the token's PIN: %s is not set", pinEnv)
			}
			if label == "" || token == "" {
				return errors.New("--token and --key-label are required")
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			p, err := open(module, token, pin, label, create)
			if err != nil {
				return err
			}
			defer p.close()
			_ = os.Remove(socket) // a socket left by a plugin killed before
			srv := service.NewGRPCService(socket, timeout, p)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				srv.Shutdown()
			}()
			log.Info("serving KMS v2", "socket", socket, "token", token, "key", label)
			if err := srv.ListenAndServe(); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", "/run/georeg/kms.sock", "the Unix socket to serve on")
	f.StringVar(&module, "module", "/usr/lib/softhsm/libsofthsm2.so", "the PKCS#11 module (shared library)")
	f.StringVar(&token, "token", "", "the token's label")
	f.StringVar(&pinEnv, "pin-env", "KMS_PKCS11_PIN", "the environment variable holding the token's user PIN")
	f.StringVar(&label, "key-label", "", "the label of the current key (its key id)")
	f.BoolVar(&create, "create-key", false, "make the current key in the token when it has none by that label")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "the gRPC connection timeout")
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		os.Exit(1)
	}
}

// plugin is the KMS v2 service over a token.
type plugin struct {
	hsm     *crypto11.Context
	current string
	mu      sync.Mutex
	keys    map[string]cipher.AEAD // by label
}

func open(module, token, pin, label string, create bool) (*plugin, error) {
	hsm, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: token, Pin: pin, GCMIVLength: 12})
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %q in %s: %w", token, module, err)
	}
	p := &plugin{hsm: hsm, current: label, keys: map[string]cipher.AEAD{}}
	if _, err := p.key(label); err != nil {
		if !create {
			hsm.Close()
			return nil, err
		}
		var id [16]byte
		_, _ = rand.Read(id[:])
		if _, err := hsm.GenerateSecretKeyWithLabel(id[:], []byte(label), 256, crypto11.CipherAES); err != nil {
			hsm.Close()
			return nil, fmt.Errorf("making key %q: %w", label, err)
		}
	}
	return p, nil
}

func (p *plugin) close() { _ = p.hsm.Close() }

// key finds the token's key labelled label.
func (p *plugin) key(label string) (cipher.AEAD, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.keys[label]; ok {
		return a, nil
	}
	k, err := p.hsm.FindKey(nil, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", label, err)
	}
	if k == nil {
		return nil, fmt.Errorf("the token holds no key %q", label)
	}
	a, err := k.NewGCM()
	if err != nil {
		return nil, err
	}
	p.keys[label] = a
	return a, nil
}

// seal and open run the token's AES-GCM; crypto11 panics on a token
// error in Seal, turned into an error here.
func seal(a cipher.AEAD, nonce, plaintext, aad []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the token: %v", r)
		}
	}()
	return a.Seal(nonce, nonce, plaintext, aad), nil
}

func (p *plugin) Encrypt(_ context.Context, _ string, data []byte) (*service.EncryptResponse, error) {
	a, err := p.key(p.current)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	ct, err := seal(a, nonce, data, []byte(p.current))
	if err != nil {
		return nil, err
	}
	return &service.EncryptResponse{Ciphertext: ct, KeyID: p.current}, nil
}

func (p *plugin) Decrypt(_ context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	a, err := p.key(req.KeyID)
	if err != nil {
		return nil, err
	}
	if len(req.Ciphertext) < 12+16 {
		return nil, errors.New("a ciphertext shorter than its nonce and tag")
	}
	return a.Open(nil, req.Ciphertext[:12], req.Ciphertext[12:], []byte(req.KeyID))
}

// Status seals and opens a probe with the current key: healthz is "ok"
// only when the token answers.
func (p *plugin) Status(ctx context.Context) (*service.StatusResponse, error) {
	st := &service.StatusResponse{Version: "v2", Healthz: "ok", KeyID: p.current}
	res, err := p.Encrypt(ctx, "", []byte("probe"))
	if err == nil {
		_, err = p.Decrypt(ctx, "", &service.DecryptRequest{Ciphertext: res.Ciphertext, KeyID: res.KeyID})
	}
	if err != nil {
		st.Healthz = err.Error()
	}
	return st, nil
}
