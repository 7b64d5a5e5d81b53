package live

import (
	"errors"
	"strconv"
	"strings"
)

// cursor is a position in the outbox's commit order: every row with
// commit_seq <= seq is behind it. epoch names the database the numbers
// come from (table outbox_live), so a cursor from a re-created database is
// told apart from a gap.
//
// On the wire it is opaque to clients: "<epoch>-<seq>", e.g.
// "3f9c2a01b7e45d10-1842".
type cursor struct {
	epoch string
	seq   int64
}

func (c cursor) String() string {
	return c.epoch + "-" + strconv.FormatInt(c.seq, 10)
}

var errBadCursor = errors.New("not a cursor of this stream")

// parseCursor reads a cursor sent back by a client.
func parseCursor(s string) (cursor, error) {
	epoch, num, ok := strings.Cut(s, "-")
	if !ok || len(epoch) != 16 || len(num) == 0 || len(num) > 19 {
		return cursor{}, errBadCursor
	}
	for i := 0; i < len(epoch); i++ {
		if !strings.ContainsRune("0123456789abcdef", rune(epoch[i])) {
			return cursor{}, errBadCursor
		}
	}
	if num[0] == '+' || num[0] == '-' {
		return cursor{}, errBadCursor
	}
	seq, err := strconv.ParseInt(num, 10, 64)
	if err != nil || seq < 0 {
		return cursor{}, errBadCursor
	}
	return cursor{epoch: epoch, seq: seq}, nil
}
