package engine

import (
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/pulsehq/pulse/rules"
)

// Limits of SPEC §1.
const (
	maxAccountLen  = 256
	maxUserLen     = 256
	maxModuleLen   = 128
	maxTicketLen   = 256
	maxDuration    = 86400
	maxCount       = 1 << 32 // api calls in one event; more is surely a bug upstream
	maxSeats       = 1e9
	maxARR         = 1e12
	minTsNs        = 0                       // 1970-01-01
	maxTsNs        = 7258118400 * 1000000000 // 2200-01-01
	msPerNs        = 1000000
	renewalDateLen = len("2006-01-02")
)

// Decoder turns one JSON event into an Event. It reuses its parser and
// buffers, so decoding does not allocate in steady state. It is not safe
// for concurrent use.
type Decoder struct {
	parser fastjson.Parser
	attrs  [rules.NumAttrs][]byte // holds numbers given for string attributes
	detail string
}

// Detail describes the last rejection in words, e.g. "user_id missing".
func (d *Decoder) Detail() string { return d.detail }

func (d *Decoder) reject(r Reason, detail string) Reason {
	d.detail = detail
	return r
}

// Decode parses and validates line into ev. It returns ReasonOK, or the
// reason the event is rejected (Detail says more). ev's byte slices point
// into line or the Decoder and are valid until the next call.
func (d *Decoder) Decode(line []byte, ev *Event) Reason {
	*ev = Event{}
	v, err := d.parser.ParseBytes(line)
	if err != nil {
		return d.reject(ReasonJSON, "not valid JSON")
	}
	obj, err := v.Object()
	if err != nil {
		return d.reject(ReasonNotObject, "not a JSON object")
	}
	var ts, typ, attrs, duration, value *fastjson.Value
	var arr, arrBefore, arrAfter *fastjson.Value
	reason := ReasonOK
	obj.Visit(func(key []byte, v *fastjson.Value) {
		if reason != ReasonOK {
			return
		}
		switch string(key) {
		case "ts":
			ts = v
		case "type":
			typ = v
		case "account_id":
			ev.Account, reason = d.str(v, maxAccountLen, ReasonAccount, "account_id")
		case "user_id":
			ev.User, reason = d.str(v, maxUserLen, ReasonUser, "user_id")
		case "module":
			ev.Module, reason = d.str(v, maxModuleLen, ReasonModule, "module")
		case "ticket_id":
			ev.Ticket, reason = d.str(v, maxTicketLen, ReasonTicket, "ticket_id")
		case "platform":
			reason = d.platform(v, ev)
		case "duration_s":
			duration = v
			ev.Duration, reason = d.number(v, 0, maxDuration, ReasonDuration, "duration_s must be a number within 0…86400")
		case "count":
			reason = d.count(v, ev)
		case "value":
			value = v
			ev.Value, reason = d.number(v, 0, 10, ReasonValue, "value must be a number within 0…10")
		case "attrs":
			attrs = v
		case "arr":
			arr = v
			ev.ARR, reason = d.number(v, 0, maxARR, ReasonARR, "arr must be a number within 0…1e12")
		case "arr_before":
			arrBefore = v
			ev.ARRBefore, reason = d.number(v, 0, maxARR, ReasonARR, "arr_before must be a number within 0…1e12")
		case "arr_after":
			arrAfter = v
			ev.ARRAfter, reason = d.number(v, 0, maxARR, ReasonARR, "arr_after must be a number within 0…1e12")
		case "outcome":
			var o uint8
			o, reason = d.enum(v, OutcomeNames[:], ReasonOutcome, "outcome must be renewed, churned, expanded or contracted")
			ev.Outcome = Outcome(o)
		case "channel":
			var c uint8
			c, reason = d.enum(v, channelNames[:], ReasonChannel, "channel must be meeting, call, email, qbr or chat")
			ev.Channel = Channel(c)
		case "role":
			var r uint8
			r, reason = d.enum(v, roleNames[:], ReasonRole, "role must be champion, decision_maker or admin")
			ev.Role = Role(r)
		case "change":
			var c uint8
			c, reason = d.enum(v, changeNames[:], ReasonChange, "change must be joined or left")
			ev.Change = Change(c)
		}
	})
	if reason != ReasonOK {
		return reason
	}
	if ts == nil {
		return d.reject(ReasonTs, "ts missing")
	}
	if reason = d.timestamp(ts, ev); reason != ReasonOK {
		return reason
	}
	if len(ev.Account) == 0 {
		return d.reject(ReasonAccount, "account_id missing or empty")
	}
	if typ == nil {
		return d.reject(ReasonType, "type missing")
	}
	if reason = d.eventType(typ, ev); reason != ReasonOK {
		return reason
	}
	return d.required(ev, present{attrs: attrs, duration: duration != nil, value: value != nil,
		arr: arr != nil, arrBefore: arrBefore != nil, arrAfter: arrAfter != nil})
}

// present says which optional fields an event carried, for required.
type present struct {
	attrs                    *fastjson.Value
	duration, value          bool
	arr, arrBefore, arrAfter bool
}

// required checks the fields each type needs (SPEC §1).
func (d *Decoder) required(ev *Event, f present) Reason {
	if ev.Type.userActivity() || ev.Type == TypeNPS {
		if len(ev.User) == 0 {
			return d.reject(ReasonUser, "user_id missing for "+ev.Type.String())
		}
	}
	switch ev.Type {
	case TypeFeature:
		if len(ev.Module) == 0 {
			return d.reject(ReasonModule, "module missing for feature")
		}
	case TypeSession:
		if !f.duration {
			return d.reject(ReasonDuration, "duration_s missing for session")
		}
	case TypeAPI:
		if ev.Count == 0 {
			ev.Count = 1
		}
	case TypeTicketOpened, TypeTicketResolved:
		if len(ev.Ticket) == 0 {
			return d.reject(ReasonTicket, "ticket_id missing for "+ev.Type.String())
		}
	case TypeNPS:
		if !f.value {
			return d.reject(ReasonValue, "value missing for nps")
		}
	case TypeAccount:
		if f.attrs == nil {
			return d.reject(ReasonAttrs, "attrs missing for account")
		}
		return d.accountAttrs(f.attrs, ev)
	case TypeContract:
		if !f.arr {
			return d.reject(ReasonARR, "arr missing for contract")
		}
		if f.attrs != nil {
			return d.accountAttrs(f.attrs, ev)
		}
	case TypeRenewal:
		if ev.Outcome == OutcomeNone {
			return d.reject(ReasonOutcome, "outcome missing for renewal")
		}
		if !f.arrBefore {
			return d.reject(ReasonARR, "arr_before missing for renewal")
		}
		switch {
		case ev.Outcome == OutcomeChurned && !f.arrAfter:
			ev.ARRAfter = 0 // a churned account pays nothing after it
		case ev.Outcome == OutcomeChurned && ev.ARRAfter != 0:
			return d.reject(ReasonARR, "arr_after must be 0 for a churned renewal")
		case !f.arrAfter:
			return d.reject(ReasonARR, "arr_after missing for renewal")
		}
	case TypeTouch:
		if ev.Channel == ChannelNone {
			return d.reject(ReasonChannel, "channel missing for touch")
		}
	case TypeStakeholder:
		if ev.Role == RoleNone {
			return d.reject(ReasonRole, "role missing for stakeholder")
		}
		if ev.Change == ChangeNone {
			return d.reject(ReasonChange, "change missing for stakeholder")
		}
	}
	return ReasonOK
}

// enum decodes a string that must be one of names (index 0, the empty
// name, is not accepted).
func (d *Decoder) enum(v *fastjson.Value, names []string, r Reason, detail string) (uint8, Reason) {
	b, err := v.StringBytes()
	if err != nil {
		return 0, d.reject(r, detail)
	}
	if i := enumOf(names, b); i != 0 {
		return i, ReasonOK
	}
	return 0, d.reject(r, detail)
}

func (d *Decoder) str(v *fastjson.Value, max int, r Reason, name string) ([]byte, Reason) {
	b, err := v.StringBytes()
	if err != nil {
		return nil, d.reject(r, name+" must be a string")
	}
	if len(b) > max {
		return nil, d.reject(r, name+" too long")
	}
	if !utf8.Valid(b) {
		return nil, d.reject(r, name+" is not valid UTF-8")
	}
	return b, ReasonOK
}

func (d *Decoder) number(v *fastjson.Value, lo, hi float64, r Reason, detail string) (float64, Reason) {
	x, err := v.Float64()
	if err != nil || !(x >= lo && x <= hi) {
		return -1, d.reject(r, detail)
	}
	return x, ReasonOK
}

func (d *Decoder) count(v *fastjson.Value, ev *Event) Reason {
	if v.Type() != fastjson.TypeNumber {
		return d.reject(ReasonCount, "count must be an integer ≥ 1")
	}
	n, err := v.Int64()
	if err != nil || n < 1 || n > maxCount {
		return d.reject(ReasonCount, "count must be an integer ≥ 1")
	}
	ev.Count = n
	return ReasonOK
}

func (d *Decoder) platform(v *fastjson.Value, ev *Event) Reason {
	b, err := v.StringBytes()
	if err == nil {
		switch string(b) {
		case "web":
			ev.Platform = PlatformWeb
			return ReasonOK
		case "desktop":
			ev.Platform = PlatformDesktop
			return ReasonOK
		case "mobile":
			ev.Platform = PlatformMobile
			return ReasonOK
		case "api":
			ev.Platform = PlatformAPI
			return ReasonOK
		}
	}
	return d.reject(ReasonPlatform, "platform must be web, desktop, mobile or api")
}

func (d *Decoder) timestamp(v *fastjson.Value, ev *Event) Reason {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		ns, ok := parseRFC3339(b)
		if !ok {
			return d.reject(ReasonTs, "ts is not an RFC 3339 time")
		}
		ev.Ts = ns
	case fastjson.TypeNumber:
		ms, err := v.Int64()
		if err != nil || ms < minTsNs/msPerNs || ms > maxTsNs/msPerNs {
			return d.reject(ReasonTs, "ts must be whole epoch milliseconds within 1970…2200")
		}
		ev.Ts = ms * msPerNs
	default:
		return d.reject(ReasonTs, "ts must be an RFC 3339 string or epoch milliseconds")
	}
	if ev.Ts < minTsNs || ev.Ts >= maxTsNs {
		return d.reject(ReasonTs, "ts must be within 1970…2200")
	}
	return ReasonOK
}

func (d *Decoder) eventType(v *fastjson.Value, ev *Event) Reason {
	b, err := v.StringBytes()
	if err == nil {
		for i := TypeLogin; i <= lastType; i++ {
			if string(b) == typeNames[i] {
				ev.Type = i
				return ReasonOK
			}
		}
	}
	return d.reject(ReasonType, "type is not one of login, feature, session, api, ticket_opened, ticket_resolved, nps, account, contract, renewal, touch, stakeholder")
}

func (d *Decoder) accountAttrs(v *fastjson.Value, ev *Event) Reason {
	obj, err := v.Object()
	if err != nil {
		return d.reject(ReasonAttrs, "attrs must be an object")
	}
	reason := ReasonOK
	a := &ev.Attrs
	obj.Visit(func(key []byte, v *fastjson.Value) {
		if reason != ReasonOK {
			return
		}
		switch string(key) {
		case "seats":
			reason = d.seats(v, a)
			return
		case "renewal_date":
			b, err := v.StringBytes()
			ns, ok := parseDate(b)
			if err != nil || !ok {
				reason = d.reject(ReasonAttrs, "attrs.renewal_date must be YYYY-MM-DD")
				return
			}
			a.HasRenewal, a.RenewalNs = true, ns
			return
		}
		i, ok := rules.AttrByName(string(key))
		if !ok {
			return // unknown attributes are ignored like unknown fields
		}
		switch v.Type() {
		case fastjson.TypeString:
			b, _ := v.StringBytes()
			if len(b) > maxAccountLen || !utf8.Valid(b) {
				reason = d.reject(ReasonAttrs, "attrs values must be valid UTF-8 of at most 256 bytes")
				return
			}
			a.Values[i] = b
		case fastjson.TypeNumber:
			d.attrs[i] = v.MarshalTo(d.attrs[i][:0])
			a.Values[i] = d.attrs[i]
		default:
			reason = d.reject(ReasonAttrs, "attrs values must be strings or numbers")
			return
		}
		a.Has[i] = true
	})
	return reason
}

func (d *Decoder) seats(v *fastjson.Value, a *AccountAttrs) Reason {
	var x float64
	var err error
	switch v.Type() {
	case fastjson.TypeNumber:
		x, err = v.Float64()
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		x, err = strconv.ParseFloat(string(b), 64)
	default:
		return d.reject(ReasonAttrs, "attrs.seats must be a number")
	}
	if err != nil || !(x >= 0 && x <= maxSeats) {
		return d.reject(ReasonAttrs, "attrs.seats must be a number within 0…1e9")
	}
	a.HasSeats, a.Seats = true, x
	return ReasonOK
}
