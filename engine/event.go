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
	TypeContract
	TypeRenewal
	TypeTouch
	TypeStakeholder

	lastType = TypeStakeholder
)

var typeNames = [...]string{"", "login", "feature", "session", "api", "ticket_opened", "ticket_resolved", "nps", "account",
	"contract", "renewal", "touch", "stakeholder"}

func (t Type) String() string { return typeNames[t] }

// userActivity reports whether events of this type count as user activity.
func (t Type) userActivity() bool { return t >= TypeLogin && t <= TypeSession }

// TypeNames lists the event types by value (index 0 is unused).
func TypeNames() []string { return typeNames[1:] }

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
	User     []byte       // may be empty for api, ticket and account events
	Module   []byte       // feature events
	Ticket   []byte       // ticket events
	Duration float64      // session seconds
	Count    int64        // api calls (≥ 1)
	Value    float64      // nps answer 0…10
	Attrs    AccountAttrs // account and contract events

	ARR       float64 // contract: annual recurring revenue from now on
	ARRBefore float64 // renewal
	ARRAfter  float64 // renewal; becomes the account's arr
	Outcome   Outcome // renewal
	Channel   Channel // touch
	Role      Role    // stakeholder
	Change    Change  // stakeholder
}

// Outcome is how a renewal ended.
type Outcome uint8

// The renewal outcomes; OutcomeNone only while decoding.
const (
	OutcomeNone Outcome = iota
	OutcomeRenewed
	OutcomeChurned
	OutcomeExpanded
	OutcomeContracted
)

// OutcomeNames lists the outcomes by value, for schemas and validation.
var OutcomeNames = [...]string{"", "renewed", "churned", "expanded", "contracted"}

func (o Outcome) String() string { return OutcomeNames[o] }

// Channel is how the customer-success team reached the customer.
type Channel uint8

// The touch channels.
const (
	ChannelNone Channel = iota
	ChannelMeeting
	ChannelCall
	ChannelEmail
	ChannelQBR
	ChannelChat
)

var channelNames = [...]string{"", "meeting", "call", "email", "qbr", "chat"}

func (c Channel) String() string { return channelNames[c] }

// Role is a customer-side stakeholder role.
type Role uint8

// The stakeholder roles.
const (
	RoleNone Role = iota
	RoleChampion
	RoleDecisionMaker
	RoleAdmin
)

var roleNames = [...]string{"", "champion", "decision_maker", "admin"}

func (r Role) String() string { return roleNames[r] }

// Change is what happened to a stakeholder role.
type Change uint8

// The stakeholder changes.
const (
	ChangeNone Change = iota
	ChangeJoined
	ChangeLeft
)

var changeNames = [...]string{"", "joined", "left"}

func (c Change) String() string { return changeNames[c] }

// enumOf returns the index of b in names (skipping the empty zero value),
// or 0 when it is none of them.
func enumOf(names []string, b []byte) uint8 {
	for i := 1; i < len(names); i++ {
		if string(b) == names[i] {
			return uint8(i)
		}
	}
	return 0
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
	ReasonARR
	ReasonOutcome
	ReasonChannel
	ReasonRole
	ReasonChange
	ReasonAccountLimit
	ReasonUserLimit

	NumReasons int = iota
)

var reasonNames = [NumReasons]string{
	"ok", "bad_json", "not_object", "bad_ts", "bad_account_id", "bad_type",
	"bad_user_id", "bad_module", "bad_platform", "bad_duration", "bad_count",
	"bad_ticket_id", "bad_value", "bad_attrs", "late", "future", "hash_collision",
	"bad_arr", "bad_outcome", "bad_channel", "bad_role", "bad_change",
	"account_limit", "user_limit",
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
