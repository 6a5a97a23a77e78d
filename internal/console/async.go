package console

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/api"
)

// asyncRows is how many tasks and dead letters the function page shows.
const asyncRows = 20

type taskRow struct{ nimbus.Task }

// Stoppable reports whether the task may still be stopped.
func (t taskRow) Stoppable() bool {
	return !nimbus.TaskFinal(t.Status) && t.Status != nimbus.TaskStopping
}

type deadLetterRow struct {
	nimbus.DeadLetter
	Seq string
}

func (v *visit) async(name string) (asyncView, error) {
	view := asyncView{Name: name, CSRF: v.csrf}
	var tasks api.TaskList
	if err := v.get(fnPath("/nimbus/v1/functions/", name)+"/tasks?limit="+strconv.Itoa(asyncRows), &tasks); err != nil {
		return view, err
	}
	for _, t := range tasks.Tasks {
		view.Tasks = append(view.Tasks, taskRow{t})
	}
	var dls api.DeadLetterList
	if err := v.get(fnPath("/nimbus/v1/functions/", name)+"/dead-letters?limit="+strconv.Itoa(asyncRows), &dls); err != nil {
		return view, err
	}
	for _, d := range dls.DeadLetters {
		view.DeadLetters = append(view.DeadLetters, deadLetterRow{d, strconv.FormatUint(d.Seq, 10)})
	}
	return view, nil
}

// functionAsync is GET /console/functions/{name}/async (htmx).
func (c *Console) functionAsync(w http.ResponseWriter, r *http.Request, v *visit) error {
	view, err := v.async(r.PathValue("name"))
	if err != nil {
		return err
	}
	c.fragment(w, "async", view)
	return nil
}

// taskStop is POST /console/functions/{name}/tasks/{id}/stop.
func (c *Console) taskStop(w http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	if err := v.post(fnPath("/nimbus/v1/functions/", name)+"/tasks/"+url.PathEscape(r.PathValue("id"))+"/stop", nil, nil); err != nil {
		return err
	}
	return c.after(w, r, v, name, "async")
}

// deadLettersRedrive is POST /console/functions/{name}/dead-letters/redrive
// with seq: one dead letter.
func (c *Console) deadLettersRedrive(w http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	var req api.RedriveRequest
	s, err := formValue(r, "seq")
	if err != nil {
		return err
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Type: "InvalidParameterValueException", Message: "seq must be a dead letter's number, not " + strconv.Quote(s)}
	}
	req.Seqs = []uint64{seq}
	if err := v.post(fnPath("/nimbus/v1/functions/", name)+"/dead-letters/redrive", req, nil); err != nil {
		return err
	}
	return c.after(w, r, v, name, "async")
}
