package engine

import "github.com/pulsehq/pulse/rules"

// Type is an event type of SPEC §1.
type Type uint8

// The event types. Login, Feature and Session are user activity.
const (
	TypeLogin Type = iota + 1
	TypeFeature
	TypeSession
	TypeAPI
	TypeTicketOpened
	TypeTicketResolved
	TypeNPS
	TypeAccount
)

var typeNames = [...]string{"", "login", "feature", "session", "api", "ticket_opened", "ticket_resolved", "nps", "account"}

func (t Type) String() string { return typeNames[t] }

// userActivity reports whether events of this type count as user activity.
func (t Type) userActivity() bool { return t >= TypeLogin && t <= TypeSession }

// Platform is the client platform of an event; PlatformNone when absent.
type Platform uint8

// The platforms.
const (
	PlatformNone Platform = iota
	PlatformWeb
	PlatformDesktop
	PlatformMobile
	PlatformAPI
)

// Event is one decoded, validated event. Its byte slices point into the
// Decoder's or the input's memory and are valid only until the next Decode:
// Partition.Apply copies what it keeps.
type Event struct {
	Ts       int64 // event time, Unix nanoseconds
	Type     Type
	Platform Platform
	Account  []byte
	User     []byte  // may be empty for api, ticket and account events
	Module   []byte  // feature events
	Ticket   []byte  // ticket events
	Duration float64 // session seconds
	Count    int64   // api calls (≥ 1)
	Value    float64 // nps answer 0…10
	Attrs    AccountAttrs
}

// AccountAttrs is the attrs object of an account event. Only keys Pulse
// understands are kept; others are ignored like unknown fields.
type AccountAttrs struct {
	HasSeats   bool
	Seats      float64
	HasRenewal bool
	RenewalNs  int64 // renewal_date at 00:00 UTC
	Has        [rules.NumAttrs]bool
	Values     [rules.NumAttrs][]byte
}

// Reason says why an event was rejected. ReasonOK means it was not.
type Reason uint8

// The rejection reasons, exported as the reason label of
// pulse_events_total{result="invalid"}; Late and Future have results of
// their own.
const (
	ReasonOK Reason = iota
	ReasonJSON
	ReasonNotObject
	ReasonTs
	ReasonAccount
	ReasonType
	ReasonUser
	ReasonModule
	ReasonPlatform
	ReasonDuration
	ReasonCount
	ReasonTicket
	ReasonValue
	ReasonAttrs
	ReasonLate
	ReasonFuture
	ReasonCollision

	NumReasons int = iota
)

var reasonNames = [NumReasons]string{
	"ok", "bad_json", "not_object", "bad_ts", "bad_account_id", "bad_type",
	"bad_user_id", "bad_module", "bad_platform", "bad_duration", "bad_count",
	"bad_ticket_id", "bad_value", "bad_attrs", "late", "future", "hash_collision",
}

func (r Reason) String() string { return reasonNames[r] }

// Result is the result label of pulse_events_total: ok, invalid, late or
// future.
func (r Reason) Result() string {
	switch r {
	case ReasonOK:
		return "ok"
	case ReasonLate:
		return "late"
	case ReasonFuture:
		return "future"
	}
	return "invalid"
}
