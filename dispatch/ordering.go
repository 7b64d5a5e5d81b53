package dispatch

// Ordering modes: which rows must reach Svix in commit order (commit_seq).
const (
	// OrderByAsset orders the rows of one (app_id, data.asset_id): an
	// asset's own events and the cut and render events of its cuts and
	// renders.
	OrderByAsset = "asset"
	// OrderByEntity orders the rows of one (app_id, data.entity_id) only.
	// The relay finds a key's rows through its asset, so an entity must
	// belong to one asset.
	OrderByEntity = "entity"
	// OrderOff sends rows as soon as they are numbered.
	OrderOff = "off"
)
