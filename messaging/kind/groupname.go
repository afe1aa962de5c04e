package kind

// GroupName is a member's message naming its group. The server keeps a
// group's member list but never its name: a member sends the name end to
// end to the group, and each member's client shows the last one it
// received (a later one renames the group). The web app sends it when it
// creates a group and again, as the inviting admin, when an invitee has
// accepted, because messages sent before joining never reach a newcomer.
const GroupName Kind = "group.name"

// GroupNameBody names the group GroupID: one line of at most MaxName
// characters, with no control characters.
type GroupNameBody struct {
	GroupID string `json:"group_id"`
	Name    string `json:"name"`
}

func (*GroupNameBody) Kind() Kind { return GroupName }
func (b *GroupNameBody) Validate() error {
	if err := checkID("group_id", b.GroupID); err != nil {
		return invalid(GroupName, "%v", err)
	}
	if err := checkChars("name", b.Name, MaxName, true); err != nil {
		return invalid(GroupName, "%v", err)
	}
	return nil
}
