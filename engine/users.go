package engine

// user is one end user of an account, keyed by the xxhash of its user_id
// (ids are never stored). days is a bitmap of the days it was active: bit i
// is day (account.head − i), so 64 days of history fit in one word.
type user struct {
	hash      uint64
	days      uint64
	mobileDay int32 // last day bucket with a mobile user-activity event; 0 = never
}

// userTable is an open-addressing hash table of users (linear probing,
// power-of-two size, load ≤ 3/4). Hash 0 marks an empty slot, so a user
// whose hash is 0 is stored as 1.
type userTable struct {
	slots []user
	n     int32
}

// get returns the user with hash h, creating it if needed; created reports
// whether it is new.
func (t *userTable) get(h uint64) (u *user, created bool) {
	if h == 0 {
		h = 1
	}
	if int(t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.hash == h {
			return s, false
		}
		if s.hash == 0 {
			s.hash = h
			t.n++
			return s, true
		}
	}
}

// has reports whether the table holds a user with hash h.
func (t *userTable) has(h uint64) bool {
	if h == 0 {
		h = 1
	}
	if len(t.slots) == 0 {
		return false
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch t.slots[i].hash {
		case h:
			return true
		case 0:
			return false
		}
	}
}

func (t *userTable) grow() {
	old := t.slots
	size := 4
	if len(old) > 0 {
		size = len(old) * 2
	}
	t.slots = make([]user, size)
	mask := uint64(size - 1)
	for _, u := range old {
		if u.hash == 0 {
			continue
		}
		i := u.hash & mask
		for t.slots[i].hash != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = u
	}
}

// shift moves every bitmap forward by k days, when the account's head day
// advances.
func (t *userTable) shift(k int32) {
	for i := range t.slots {
		if k >= 64 {
			t.slots[i].days = 0
		} else {
			t.slots[i].days <<= uint(k)
		}
	}
}

// aligned shifts a bitmap relative to the head day so that bit j is the day
// j days before the evaluation day (offset = evaluation day − head).
func aligned(days uint64, offset int32) uint64 {
	if offset >= 64 {
		return 0
	}
	return days << uint(offset)
}
