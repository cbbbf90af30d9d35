package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// ErrManifestInvalid is wrapped by every error ParseManifest returns.
var ErrManifestInvalid = errors.New("manifest invalid")

// Descriptor is a content descriptor as it appears in a manifest.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     json.RawMessage   `json:"platform,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
}

// Manifest is the part of an image manifest, image index, Docker schema2
// manifest or Docker manifest list that a registry checks and indexes.
type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *Descriptor       `json:"config,omitempty"`
	Layers        []Descriptor      `json:"layers,omitempty"`
	Manifests     []Descriptor      `json:"manifests,omitempty"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// Blobs returns the blobs an image manifest references that the registry
// must hold: its config and its distributable layers. A layer with URLs
// (a foreign or non-distributable layer) is fetched by clients from those
// URLs and need not be present.
func (m *Manifest) Blobs() []Descriptor {
	var out []Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	for _, l := range m.Layers {
		if len(l.URLs) > 0 {
			continue
		}
		out = append(out, l)
	}
	return out
}

// ResolvedArtifactType is the artifact type the referrers API reports: the
// artifactType field, else the config media type of an image manifest.
func (m *Manifest) ResolvedArtifactType() string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	if m.Config != nil && !IsIndex(m.MediaType) {
		return m.Config.MediaType
	}
	return ""
}

// ParseManifest parses payload sent with Content-Type contentType and
// checks it is a well-formed manifest of a stored media type whose
// mediaType field, when present, agrees with the Content-Type. It returns
// the manifest with MediaType filled in. Errors wrap ErrManifestInvalid and
// say what to change.
func ParseManifest(contentType string, payload []byte) (*Manifest, error) {
	ct := BaseMediaType(contentType)
	if !json.Valid(payload) {
		return nil, fmt.Errorf("%w: body is not valid JSON", ErrManifestInvalid)
	}
	var probe struct {
		MediaType *string `json:"mediaType"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return nil, fmt.Errorf("%w: body is not a JSON object: %v", ErrManifestInvalid, err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
	}
	switch {
	case ct == MediaTypeDockerSchema1 || ct == MediaTypeDockerSchema1Signed || m.SchemaVersion == 1:
		return nil, fmt.Errorf("%w: Docker schema1 manifests are not supported; push schema2 or OCI (e.g. `crane copy` converts)", ErrManifestInvalid)
	case m.SchemaVersion != 2:
		return nil, fmt.Errorf("%w: schemaVersion is %d, want 2", ErrManifestInvalid, m.SchemaVersion)
	}
	switch {
	case m.MediaType == "" && ct == "":
		return nil, fmt.Errorf("%w: no media type: send Content-Type with one of %v", ErrManifestInvalid, ManifestMediaTypes)
	case m.MediaType == "":
		m.MediaType = ct
	case ct != "" && ct != m.MediaType:
		return nil, fmt.Errorf("%w: Content-Type %q disagrees with the manifest's mediaType %q; send the manifest's own media type", ErrManifestInvalid, ct, m.MediaType)
	}
	if !IsManifestMediaType(m.MediaType) {
		return nil, fmt.Errorf("%w: media type %q is not a manifest type this registry stores; use one of %v", ErrManifestInvalid, m.MediaType, ManifestMediaTypes)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	if IsIndex(m.MediaType) {
		if m.Config != nil || len(m.Layers) > 0 {
			return fmt.Errorf("an index (%s) has no config or layers", m.MediaType)
		}
		for i, d := range m.Manifests {
			if err := d.validate(fmt.Sprintf("manifests[%d]", i)); err != nil {
				return err
			}
		}
	} else {
		if len(m.Manifests) > 0 {
			return fmt.Errorf("an image manifest (%s) has no manifests list", m.MediaType)
		}
		if m.Config == nil {
			return errors.New("config descriptor is missing")
		}
		if err := m.Config.validate("config"); err != nil {
			return err
		}
		for i, d := range m.Layers {
			if err := d.validate(fmt.Sprintf("layers[%d]", i)); err != nil {
				return err
			}
		}
	}
	if m.Subject != nil {
		if err := m.Subject.validate("subject"); err != nil {
			return err
		}
	}
	return nil
}

func (d *Descriptor) validate(field string) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s.digest %q: %v", field, d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s.size is negative (%d)", field, d.Size)
	}
	if d.MediaType == "" {
		return fmt.Errorf("%s.mediaType is empty", field)
	}
	if BaseMediaType(d.MediaType) == "" {
		return fmt.Errorf("%s.mediaType %q is not a media type", field, d.MediaType)
	}
	return nil
}
