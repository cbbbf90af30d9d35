package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/transfer"
)

// importCmd mirrors `az acr import`: the region pulls from the source.
func importCmd() *cobra.Command {
	var registry, output string
	var req transfer.Request
	var stdin, noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "import --source REGISTRY/REPO:TAG|@DIGEST [--image REPO[:TAG]]",
		Short: "Import an image from any OCI registry, server side (every platform; --referrers too), with progress",
		Example: `  georeg import --source docker.io/library/alpine:3.20 --image base/alpine:3.20
  georeg import --source http://127.0.0.1:5999/app@sha256:... --referrers --username u --password-stdin`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if req.Source == "" {
				return errors.New("--source is required")
			}
			if stdin {
				line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				req.Password = strings.TrimSpace(line)
			}
			client := cli.New(registry, 30*time.Second)
			var job transfer.Job
			if err := client.Do(c.Context(), http.MethodPost, "/_georeg/v1/imports", req, &job); err != nil {
				return err
			}
			if !noWait {
				ctx, cancel := context.WithTimeout(c.Context(), timeout)
				defer cancel()
				if err := followImport(ctx, client, &job); err != nil {
					return err
				}
			}
			if !custom(output) {
				if err := show(output, job, "", nil); err != nil {
					return err
				}
				if job.State == transfer.Failed {
					return errors.New(job.Error)
				}
				return nil
			}
			fmt.Printf("%s %s -> %s %s: %d manifests, %d blobs (%d already here), %s\n", job.State, job.Source, job.Target,
				job.Digest, job.Manifests, job.Blobs, job.Reused, mib(job.Bytes))
			if job.State == transfer.Failed {
				return errors.New(job.Error)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&registry, "registry", "r", cli.Registry(), "registry (the region that imports)")
	f.StringVarP(&output, "output", "o", "table", cli.OutputHelp)
	f.StringVar(&req.Source, "source", "", "source image: [http://]registry/repository:tag or @digest")
	f.StringVar(&req.Image, "image", "", "target repository[:tag] (default: the source's)")
	f.StringVar(&req.Username, "username", "", "the source registry's user")
	f.StringVar(&req.Password, "password", "", "the source registry's password (prefer --password-stdin)")
	f.BoolVar(&stdin, "password-stdin", false, "read the source password from stdin")
	f.BoolVar(&req.Force, "force", false, "overwrite the target tag if it points elsewhere")
	f.BoolVar(&req.Referrers, "referrers", false, "also import the manifests that refer to the image (signatures, SBOMs)")
	f.BoolVar(&noWait, "no-wait", false, "start the import and print its job; do not follow it")
	f.DurationVar(&timeout, "timeout", 6*time.Hour, "how long to follow the import")
	return cmd
}

// followImport polls the job and draws a progress bar on stderr until it
// ends.
func followImport(ctx context.Context, client *cli.Client, job *transfer.Job) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	out := newProgress()
	for job.State == transfer.Running {
		select {
		case <-ctx.Done():
			out.end()
			return fmt.Errorf("import %s still running after the timeout: follow it with GET /_georeg/v1/imports/%s", job.ID, job.ID)
		case <-tick.C:
		}
		if err := client.Do(ctx, http.MethodGet, "/_georeg/v1/imports/"+job.ID, nil, job); err != nil {
			out.end()
			return err
		}
		if job.State != transfer.Running {
			break // the outcome is printed once, by the caller
		}
		out.show(step{what: fmt.Sprintf("import %s: %d/%d blobs", job.Target, job.BlobsDone, job.Blobs), done: job.BytesDone, total: job.Bytes}, false)
	}
	out.end()
	return nil
}
