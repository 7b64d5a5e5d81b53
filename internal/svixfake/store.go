package svixfake

import (
	"slices"
	"sort"
	"sync"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
)

// store is the fake's data: one environment shared by every token, as if
// all tokens belonged to the same Svix organization. mu is held only for
// map and slice updates, never for I/O, JSON work or sleeps.
type store struct {
	mu         sync.Mutex
	apps       map[string]*app // by id
	appsByUID  map[string]*app
	appOrder   []*app
	eventTypes map[string]*models.EventTypeOut
	msgCount   int
	// allMsgs holds the messages kept, oldest first, from allHead on;
	// the prefix before allHead was forgotten (Config.MessageRetention).
	allMsgs []*Message
	allHead int
}

type app struct {
	out       models.ApplicationOut
	msgs      []*Message
	byID      map[string]*Message
	byEventID map[string]*Message
	endpoints []*endpoint
}

type endpoint struct {
	out    models.EndpointOut
	secret string
	wh     *svix.Webhook
	// oldSecrets are the secrets replaced by rotations, with the end of
	// their grace period.
	oldSecrets []expiringSecret
}

type expiringSecret struct {
	secret  string
	wh      *svix.Webhook
	expires time.Time
}

func newStore() store {
	return store{
		apps:       make(map[string]*app),
		appsByUID:  make(map[string]*app),
		eventTypes: make(map[string]*models.EventTypeOut),
	}
}

// findApp looks an app up by id or uid. Caller holds mu.
func (st *store) findApp(idOrUID string) *app {
	if a, ok := st.apps[idOrUID]; ok {
		return a
	}
	return st.appsByUID[idOrUID]
}

// addApp stores a new app. Caller holds mu.
func (st *store) addApp(out models.ApplicationOut) *app {
	a := &app{
		out:       out,
		byID:      make(map[string]*Message),
		byEventID: make(map[string]*Message),
	}
	st.apps[out.Id] = a
	if out.Uid != nil {
		st.appsByUID[*out.Uid] = a
	}
	st.appOrder = append(st.appOrder, a)
	return a
}

// forgetBefore drops the messages accepted before cutoff
// (Config.MessageRetention). allMsgs is in acceptance order, and so is each
// app's msgs, so the oldest message overall is the oldest of its app:
// amortized O(1) per message. Caller holds mu.
func (st *store) forgetBefore(cutoff time.Time) {
	for st.allHead < len(st.allMsgs) {
		m := st.allMsgs[st.allHead]
		if !m.Timestamp.Before(cutoff) {
			break
		}
		if a := st.apps[m.AppID]; a != nil {
			delete(a.byID, m.ID)
			if m.EventID != "" && a.byEventID[m.EventID] == m {
				delete(a.byEventID, m.EventID)
			}
			if len(a.msgs) > 0 && a.msgs[0] == m {
				a.msgs[0] = nil
				a.msgs = a.msgs[1:]
			}
		}
		st.allMsgs[st.allHead] = nil
		st.allHead++
	}
	// Reclaim the forgotten prefix once it dominates the slice.
	if st.allHead > 1024 && st.allHead*2 > len(st.allMsgs) {
		st.allMsgs = append([]*Message(nil), st.allMsgs[st.allHead:]...)
		st.allHead = 0
	}
}

// findEndpoint looks an endpoint up by id or uid. Caller holds mu.
func (a *app) findEndpoint(idOrUID string) (int, *endpoint) {
	for i, ep := range a.endpoints {
		if ep.out.Id == idOrUID || (ep.out.Uid != nil && *ep.out.Uid == idOrUID) {
			return i, ep
		}
	}
	return -1, nil
}

// deliveryTargets lists the endpoints that subscribe to m, Svix style: not
// disabled, filterTypes absent or containing the event type, channels
// absent or sharing one with the message; each with the secrets it is
// signed with (the current one and those rotated out less than their
// grace period before m). Caller holds mu.
func (a *app) deliveryTargets(m *Message) []deliveryTarget {
	var out []deliveryTarget
	for _, ep := range a.endpoints {
		if ep.out.Disabled != nil && *ep.out.Disabled {
			continue
		}
		if ep.out.FilterTypes != nil && !slices.Contains(ep.out.FilterTypes, m.EventType) {
			continue
		}
		if ep.out.Channels != nil && !slices.ContainsFunc(ep.out.Channels, func(ch string) bool {
			return slices.Contains(m.Channels, ch)
		}) {
			continue
		}
		t := deliveryTarget{endpointID: ep.out.Id, url: ep.out.Url, wh: ep.wh}
		for _, old := range ep.oldSecrets {
			if m.Timestamp.Before(old.expires) {
				t.oldWhs = append(t.oldWhs, old.wh)
			}
		}
		out = append(out, t)
	}
	return out
}

// Messages returns the messages accepted for app (an id or uid), oldest
// first; nil when the app does not exist.
func (s *Server) Messages(app string) []Message {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	a := s.store.findApp(app)
	if a == nil {
		return nil
	}
	return copyMessages(a.msgs)
}

// AllMessages returns every accepted message still kept
// (Config.MessageRetention), in acceptance order.
func (s *Server) AllMessages() []Message {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	return copyMessages(s.store.allMsgs[s.store.allHead:])
}

// MessageCount returns how many messages have been accepted in total,
// forgotten ones (Config.MessageRetention) included.
func (s *Server) MessageCount() int {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	return s.store.msgCount
}

// MessageByEventID returns the message with eventID in app (an id or uid).
func (s *Server) MessageByEventID(app, eventID string) (Message, bool) {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	a := s.store.findApp(app)
	if a == nil {
		return Message{}, false
	}
	m, ok := a.byEventID[eventID]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Apps returns the applications, in creation order.
func (s *Server) Apps() []models.ApplicationOut {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	out := make([]models.ApplicationOut, len(s.store.appOrder))
	for i, a := range s.store.appOrder {
		out[i] = a.out
	}
	return out
}

// Endpoints returns the endpoints of app (an id or uid).
func (s *Server) Endpoints(app string) []models.EndpointOut {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	a := s.store.findApp(app)
	if a == nil {
		return nil
	}
	out := make([]models.EndpointOut, len(a.endpoints))
	for i, ep := range a.endpoints {
		out[i] = ep.out
	}
	return out
}

// EventTypes returns the registered event types, by name.
func (s *Server) EventTypes() []models.EventTypeOut {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	return s.store.sortedEventTypes()
}

func (st *store) sortedEventTypes() []models.EventTypeOut {
	out := make([]models.EventTypeOut, 0, len(st.eventTypes))
	for _, et := range st.eventTypes {
		out = append(out, *et)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func copyMessages(in []*Message) []Message {
	out := make([]Message, len(in))
	for i, m := range in {
		out[i] = *m
	}
	return out
}
