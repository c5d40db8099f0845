package kit

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomization.yaml the base uses; a key it
// does not know fails the test (kubectl kustomize checks the rest).
type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
}

// manifests holds the base's objects, each decoded strictly.
type manifests struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	configMaps   []*corev1.ConfigMap
}

// decode decodes one YAML document strictly into the Kubernetes API type
// its apiVersion and kind name: an unknown or duplicate field, or a kind
// the base has no business shipping, fails.
func (m *manifests) decode(t *testing.T, name string, doc []byte) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var obj any
	switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
	case "apps/v1/StatefulSet":
		o := &appsv1.StatefulSet{}
		m.statefulSets, obj = append(m.statefulSets, o), o
	case "v1/Service":
		o := &corev1.Service{}
		m.services, obj = append(m.services, o), o
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		m.pdbs, obj = append(m.pdbs, o), o
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		m.configMaps, obj = append(m.configMaps, o), o
	default:
		t.Fatalf("%s: unexpected %s", name, gvk)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func readKustomization(t *testing.T) (string, kustomization) {
	t.Helper()
	dir := deployPath(t, "kubernetes")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s %s", k.APIVersion, k.Kind)
	}
	return dir, k
}

// TestKustomizationListsEveryFile: every file of deploy/kubernetes is a
// resource or a generator's input, and every one named exists.
func TestKustomizationListsEveryFile(t *testing.T) {
	dir, k := readKustomization(t)
	listed := map[string]bool{"kustomization.yaml": true}
	for _, r := range k.Resources {
		listed[r] = true
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			_, file := generatorEntry(f)
			listed[file] = true
		}
	}
	for f := range listed {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", f, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !listed[e.Name()] {
			t.Errorf("deploy/kubernetes/%s is not in kustomization.yaml", e.Name())
		}
	}
}

// generatorEntry splits a configMapGenerator files entry, FILE or
// KEY=FILE, into the ConfigMap key and the file.
func generatorEntry(entry string) (key, file string) {
	if k, f, ok := strings.Cut(entry, "="); ok {
		return k, f
	}
	return path.Base(entry), entry
}

// baseManifests decodes every resource the kustomization lists.
func baseManifests(t *testing.T) (*manifests, kustomization) {
	t.Helper()
	dir, k := readKustomization(t)
	m := &manifests{}
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitYAML(data) {
			m.decode(t, fmt.Sprintf("%s (document %d)", r, i+1), doc)
		}
	}
	return m, k
}

// splitYAML splits a multi-document YAML stream, dropping empty documents.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// TestKubernetesBase checks the objects against each other, the image and
// the Pulse config they run.
func TestKubernetesBase(t *testing.T) {
	img := dockerImage(t)
	m, k := baseManifests(t)
	if len(m.statefulSets) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 {
		t.Fatalf("want one StatefulSet, one Service and one PodDisruptionBudget; have %d, %d, %d", len(m.statefulSets), len(m.services), len(m.pdbs))
	}
	sts, svc, pdb := m.statefulSets[0], m.services[0], m.pdbs[0]
	pod := sts.Spec.Template
	podLabels := labels.Set(pod.Labels)

	// Selectors select the pods.
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("StatefulSet selector %v does not select its pods %v (%v)", sts.Spec.Selector, pod.Labels, err)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, pod.Labels)
	}
	if psel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || psel.Empty() || !psel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pods", pdb.Spec.Selector)
	}
	if sts.Spec.ServiceName != svc.Name || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("StatefulSet serviceName %q: want the headless Service %q (clusterIP %q)", sts.Spec.ServiceName, svc.Name, svc.Spec.ClusterIP)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if c.Image == "" || len(c.Command) > 0 {
		t.Errorf("container: image %q command %v: use the image's entrypoint", c.Image, c.Command)
	}
	i := slices.Index(c.Args, "--config")
	if len(c.Args) == 0 || c.Args[0] != "run" || i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container args %v, want run --config FILE", c.Args)
	}
	configPath := c.Args[i+1]

	// The config: from the generated ConfigMap, mounted where --config and
	// rules point.
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	var configVolume *corev1.Volume
	for i, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil {
			configVolume = &pod.Spec.Volumes[i]
		}
	}
	if configVolume == nil {
		t.Fatal("no ConfigMap volume")
	}
	var files map[string]string // the ConfigMap's keys (file names under its mount) → files
	for _, g := range k.ConfigMapGenerator {
		if g.Name == configVolume.ConfigMap.Name {
			files = map[string]string{}
			for _, f := range g.Files {
				key, file := generatorEntry(f)
				files[key] = file
			}
		}
	}
	if files == nil {
		t.Fatalf("volume %s: ConfigMap %s is not generated by kustomization.yaml", configVolume.Name, configVolume.ConfigMap.Name)
	}
	cm, ok := mounts[configVolume.Name]
	if !ok || !cm.ReadOnly {
		t.Fatalf("ConfigMap volume %s is not mounted read-only", configVolume.Name)
	}
	inConfigMap := func(p string) string {
		file, ok := files[path.Base(p)]
		if path.Dir(p) != cm.MountPath || !ok {
			t.Errorf("%s is not a file of ConfigMap %s (mounted at %s: %v)", p, configVolume.ConfigMap.Name, cm.MountPath, slices.Sorted(maps.Keys(files)))
			return ""
		}
		return filepath.Join(deployPath(t, "kubernetes"), file)
	}
	cfgFile := inConfigMap(configPath)
	if cfgFile == "" {
		t.FailNow()
	}
	cfg := readPulseConfig(t, cfgFile)
	inConfigMap(cfg.Rules)

	// State: on the volume claim template.
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volumeClaimTemplates, want 1 for the state", len(sts.Spec.VolumeClaimTemplates))
	}
	claim := sts.Spec.VolumeClaimTemplates[0]
	state, ok := mounts[claim.Name]
	if !ok || state.ReadOnly {
		t.Fatalf("volume claim %s is not mounted writable", claim.Name)
	}
	if claim.Spec.Resources.Requests.Storage().IsZero() || len(claim.Spec.AccessModes) == 0 {
		t.Errorf("volume claim %s: size %v, access modes %v", claim.Name, claim.Spec.Resources.Requests.Storage(), claim.Spec.AccessModes)
	}
	for key, w := range cfg.writablePaths(t) {
		if !under(w, state.MountPath) {
			t.Errorf("%s %s is not on the volume claim (mounted at %s): the root file system is read-only", key, w, state.MountPath)
		}
	}

	// The port, the probes and the scrape annotations agree with the
	// config's listen address.
	port := cfg.port(t)
	if port != img.port {
		t.Errorf("listen port %d, but the image EXPOSEs %d", port, img.port)
	}
	if len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != port || c.Ports[0].Name == "" {
		t.Fatalf("container ports %+v, want one named port %d", c.Ports, port)
	}
	portName := c.Ports[0].Name
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path ||
			(p.HTTPGet.Port.String() != portName && p.HTTPGet.Port.IntValue() != port) {
			t.Errorf("%s: want an HTTP GET of %s on port %s", name, path, portName)
		}
	}
	probe("livenessProbe", c.LivenessProbe, "/healthz")
	probe("readinessProbe", c.ReadinessProbe, "/readyz")
	if c.StartupProbe != nil {
		probe("startupProbe", c.StartupProbe, "/healthz")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != portName && svc.Spec.Ports[0].TargetPort.IntValue() != port {
		t.Errorf("Service ports %+v do not target the container's %s", svc.Spec.Ports, portName)
	}
	want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": fmt.Sprint(port), "prometheus.io/path": "/metrics"}
	for key, v := range want {
		if pod.Annotations[key] != v {
			t.Errorf("pod annotation %s: %q, want %q", key, pod.Annotations[key], v)
		}
	}

	// Resources: requests, and a memory limit above GOMEMLIMIT.
	res := c.Resources
	if res.Requests.Cpu().IsZero() || res.Requests.Memory().IsZero() || res.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", res)
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		q, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
		if err != nil || q.Cmp(*res.Limits.Memory()) >= 0 {
			t.Errorf("GOMEMLIMIT=%s must be below the memory limit %v (%v)", e.Value, res.Limits.Memory(), err)
		}
	}

	// Non-root, as the image's user, with nothing extra.
	psc, csc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || csc == nil {
		t.Fatal("pod and container need a securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || int(*psc.RunAsUser) != img.uid {
		t.Errorf("pod securityContext: want runAsNonRoot and runAsUser %d, the image's user", img.uid)
	}
	if psc.FSGroup == nil {
		t.Error("pod securityContext: fsGroup, so the user can write the volume")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext: seccompProfile RuntimeDefault")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v: want no privilege escalation, a read-only root and every capability dropped", csc)
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g <= 30 {
		t.Error("terminationGracePeriodSeconds: more than the 30 s a stop may take to checkpoint and commit")
	}
}

// TestKubernetesRulesAreTheExample keeps the ConfigMap's rules.yaml equal
// to the shipped model it copies (kustomize reads no file outside the
// base's directory).
func TestKubernetesRulesAreTheExample(t *testing.T) {
	example, err := os.ReadFile(deployPath(t, "rules", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(deployPath(t, "kubernetes", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(example, copied) {
		t.Error("deploy/kubernetes/rules.yaml differs from deploy/rules/example.yaml: cp deploy/rules/example.yaml deploy/kubernetes/rules.yaml")
	}
}

// TestKustomizeBuild renders the base with kubectl's kustomize, as
// `kubectl apply -k` does, and decodes the output strictly: the generated
// ConfigMap holds both files and the StatefulSet mounts it by its hashed
// name.
func TestKustomizeBuild(t *testing.T) {
	kubectl, ok := tool(t, "kubectl", "")
	if !ok {
		return
	}
	out, err := exec.Command(kubectl, "kustomize", deployPath(t, "kubernetes")).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("kubectl kustomize: %v\n%s", err, msg)
	}
	m := &manifests{}
	for i, doc := range splitYAML(out) {
		m.decode(t, fmt.Sprintf("kubectl kustomize, document %d", i+1), doc)
	}
	if len(m.configMaps) != 1 || len(m.statefulSets) != 1 {
		t.Fatalf("rendered %d ConfigMaps and %d StatefulSets, want 1 and 1", len(m.configMaps), len(m.statefulSets))
	}
	cm := m.configMaps[0]
	if keys := slices.Sorted(maps.Keys(cm.Data)); !slices.Equal(keys, []string{"pulse.yaml", "rules.yaml"}) {
		t.Errorf("ConfigMap %s holds %v", cm.Name, keys)
	}
	mounted := false
	for _, v := range m.statefulSets[0].Spec.Template.Spec.Volumes {
		mounted = mounted || v.ConfigMap != nil && v.ConfigMap.Name == cm.Name
	}
	if !mounted || !strings.HasPrefix(cm.Name, "pulse-config-") {
		t.Errorf("the StatefulSet does not mount the generated ConfigMap %s", cm.Name)
	}
}
