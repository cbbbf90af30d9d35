package node

import (
	"context"
	"encoding/json"

	"github.com/georeg/georeg/internal/auth"
)

// ResetNetworkRules opens the registry's network rules (default action
// Allow, no rules): the break-glass for an operator whose rules deny
// them (`georeg serve --reset-network-rules`). The rules are one setting
// of the whole registry, so this opens them in every region.
func (n *Node) ResetNetworkRules(ctx context.Context) error {
	v, err := json.Marshal(auth.NetworkRules{DefaultAction: auth.Allow, IPRules: []auth.IPRule{}})
	if err != nil {
		return err
	}
	_, err = n.Region.PutSetting(ctx, auth.KindRegistry, auth.SettingNetworkRules, v)
	return err
}
