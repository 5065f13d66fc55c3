{{/*
Names and labels shared by every template.
*/}}

{{- define "suppressd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix: release-chart, or the release name alone when it
already contains the chart name. Trimmed to leave room for "-consumer".
*/}}
{{- define "suppressd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "suppressd.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "suppressd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "suppressd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "suppressd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "suppressd.labels" -}}
helm.sh/chart: {{ include "suppressd.chart" . }}
{{ include "suppressd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: suppressd
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one role's resources; dict "root" . "role" "api|consumer". */}}
{{- define "suppressd.roleLabels" -}}
{{ include "suppressd.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "suppressd.roleSelectorLabels" -}}
{{ include "suppressd.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* Name of one role's resources: <fullname>-api, <fullname>-consumer. */}}
{{- define "suppressd.roleName" -}}
{{- printf "%s-%s" (include "suppressd.fullname" .root) .role }}
{{- end }}

{{- define "suppressd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "suppressd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "suppressd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
suppressd.envNames: every non-secret setting of the binary
(cmd/suppressd/config.go), values key -> variable. The only place the
chart names them; a key missing here cannot be set.
*/}}
{{- define "suppressd.envNames" -}}
logLevel: SUPPRESSD_LOG_LEVEL
logFormat: SUPPRESSD_LOG_FORMAT
phoneRegion: SUPPRESSD_PHONE_REGION
autoRebuild: SUPPRESSD_AUTO_REBUILD
kafkaBrokers: SUPPRESSD_KAFKA_BROKERS
kafkaSaslMechanism: SUPPRESSD_KAFKA_SASL_MECHANISM
kafkaSaslUsername: SUPPRESSD_KAFKA_SASL_USERNAME
kafkaTls: SUPPRESSD_KAFKA_TLS
kafkaTlsCaFile: SUPPRESSD_KAFKA_TLS_CA_FILE
kafkaTlsCertFile: SUPPRESSD_KAFKA_TLS_CERT_FILE
kafkaTlsKeyFile: SUPPRESSD_KAFKA_TLS_KEY_FILE
kafkaTlsServerName: SUPPRESSD_KAFKA_TLS_SERVER_NAME
kafkaTlsInsecureSkipVerify: SUPPRESSD_KAFKA_TLS_INSECURE_SKIP_VERIFY
kafkaDialTimeout: SUPPRESSD_KAFKA_DIAL_TIMEOUT
redisAddrs: SUPPRESSD_REDIS_ADDRS
redisCluster: SUPPRESSD_REDIS_CLUSTER
redisMasterName: SUPPRESSD_REDIS_MASTER_NAME
redisUsername: SUPPRESSD_REDIS_USERNAME
redisDb: SUPPRESSD_REDIS_DB
redisTls: SUPPRESSD_REDIS_TLS
redisTlsCaFile: SUPPRESSD_REDIS_TLS_CA_FILE
redisTlsServerName: SUPPRESSD_REDIS_TLS_SERVER_NAME
redisTlsInsecureSkipVerify: SUPPRESSD_REDIS_TLS_INSECURE_SKIP_VERIFY
redisDialTimeout: SUPPRESSD_REDIS_DIAL_TIMEOUT
redisReadTimeout: SUPPRESSD_REDIS_READ_TIMEOUT
redisWriteTimeout: SUPPRESSD_REDIS_WRITE_TIMEOUT
redisPoolSize: SUPPRESSD_REDIS_POOL_SIZE
storePrefix: SUPPRESSD_STORE_PREFIX
storeBucketBits: SUPPRESSD_STORE_BUCKET_BITS
storeGroupBits: SUPPRESSD_STORE_GROUP_BITS
storeDurability: SUPPRESSD_STORE_DURABILITY
storeDurabilityTimeout: SUPPRESSD_STORE_DURABILITY_TIMEOUT
topicUnsubscribes: SUPPRESSD_TOPIC_UNSUBSCRIBES
topicConsent: SUPPRESSD_TOPIC_CONSENT
topicErasure: SUPPRESSD_TOPIC_ERASURE
topicAdmin: SUPPRESSD_TOPIC_ADMIN
topicLedger: SUPPRESSD_TOPIC_LEDGER
topicExtra: SUPPRESSD_TOPIC_EXTRA
topicDeadLetter: SUPPRESSD_TOPIC_DEAD_LETTER
consumerGroup: SUPPRESSD_CONSUMER_GROUP
consumerApplyGroup: SUPPRESSD_CONSUMER_APPLY_GROUP
consumerBatchSize: SUPPRESSD_CONSUMER_BATCH_SIZE
consumerBatchWait: SUPPRESSD_CONSUMER_BATCH_WAIT
consumerBackoffMin: SUPPRESSD_CONSUMER_BACKOFF_MIN
consumerBackoffMax: SUPPRESSD_CONSUMER_BACKOFF_MAX
consumerShutdownGrace: SUPPRESSD_CONSUMER_SHUTDOWN_GRACE
consumerSessionTimeout: SUPPRESSD_CONSUMER_SESSION_TIMEOUT
apiStoreTimeout: SUPPRESSD_API_STORE_TIMEOUT
apiMaxBatch: SUPPRESSD_API_MAX_BATCH
apiMaxKeys: SUPPRESSD_API_MAX_KEYS
apiMaxConns: SUPPRESSD_API_MAX_CONNS
apiBodyTimeout: SUPPRESSD_API_BODY_TIMEOUT
apiMinBodyRate: SUPPRESSD_API_MIN_BODY_RATE
indexEnabled: SUPPRESSD_INDEX_ENABLED
indexMaxLag: SUPPRESSD_INDEX_MAX_LAG
linkSigningKey: SUPPRESSD_LINK_SIGNING_KEY
linkBaseUrl: SUPPRESSD_LINK_BASE_URL
linkMailto: SUPPRESSD_LINK_MAILTO
linkHonorDnt: SUPPRESSD_LINK_HONOR_DNT
linkTtl: SUPPRESSD_LINK_TTL
linkRate: SUPPRESSD_LINK_RATE
linkClientRate: SUPPRESSD_LINK_CLIENT_RATE
linkClientIpHeader: SUPPRESSD_LINK_CLIENT_IP_HEADER
hooksPublishedTtl: SUPPRESSD_HOOKS_PUBLISHED_TTL
hooksSnsScopes: SUPPRESSD_HOOKS_SNS_SCOPES
hooksSnsNamespace: SUPPRESSD_HOOKS_SNS_NAMESPACE
hooksSnsTopicArns: SUPPRESSD_HOOKS_SNS_TOPIC_ARNS
hooksSnsCertHostPattern: SUPPRESSD_HOOKS_SNS_CERT_HOST_PATTERN
hooksSnsTolerance: SUPPRESSD_HOOKS_SNS_TOLERANCE
hooksSnsMaxBody: SUPPRESSD_HOOKS_SNS_MAX_BODY
hooksSendgridScopes: SUPPRESSD_HOOKS_SENDGRID_SCOPES
hooksSendgridNamespace: SUPPRESSD_HOOKS_SENDGRID_NAMESPACE
hooksSendgridPublicKey: SUPPRESSD_HOOKS_SENDGRID_PUBLIC_KEY
hooksSendgridGroupTopics: SUPPRESSD_HOOKS_SENDGRID_GROUP_TOPICS
hooksSendgridTolerance: SUPPRESSD_HOOKS_SENDGRID_TOLERANCE
hooksSendgridMaxBody: SUPPRESSD_HOOKS_SENDGRID_MAX_BODY
hooksMailgunScopes: SUPPRESSD_HOOKS_MAILGUN_SCOPES
hooksMailgunNamespace: SUPPRESSD_HOOKS_MAILGUN_NAMESPACE
hooksMailgunTolerance: SUPPRESSD_HOOKS_MAILGUN_TOLERANCE
hooksMailgunMaxBody: SUPPRESSD_HOOKS_MAILGUN_MAX_BODY
hooksPostmarkScopes: SUPPRESSD_HOOKS_POSTMARK_SCOPES
hooksPostmarkNamespace: SUPPRESSD_HOOKS_POSTMARK_NAMESPACE
hooksPostmarkUsername: SUPPRESSD_HOOKS_POSTMARK_USERNAME
hooksPostmarkMaxBody: SUPPRESSD_HOOKS_POSTMARK_MAX_BODY
{{- end }}

{{/* Keys that look like settings but are not values of this chart, and where they are set instead. */}}
{{- define "suppressd.notConfig" -}}
pepper: "a secret: set secrets.pepper.existingSecret"
pepperFile: "set by the chart from secrets.pepper.existingSecret"
apiKeys: "a secret: set secrets.apiKeys.existingSecret"
apiKeysFile: "set by the chart from secrets.apiKeys.existingSecret"
linkKeys: "a secret: set secrets.linkKeys.existingSecret"
linkKeysFile: "set by the chart from secrets.linkKeys.existingSecret"
linkBrandsFile: "set by the chart from api.brands"
kafkaSaslPassword: "a secret: set secrets.kafkaSaslPassword.existingSecret"
redisPassword: "a secret: set secrets.redisPassword.existingSecret"
redisSentinelPassword: "a secret: set secrets.redisSentinelPassword.existingSecret"
hooksMailgunSigningKey: "a secret: set secrets.hooksMailgunSigningKey.existingSecret"
hooksPostmarkPassword: "a secret: set secrets.hooksPostmarkPassword.existingSecret"
hooksPostmarkPathSecret: "a secret: set secrets.hooksPostmarkPathSecret.existingSecret"
role: "set by the chart: one Deployment per role (api.enabled, consumer.enabled)"
apiAddr: "set by the chart from api.port"
opsAddr: "set by the chart from consumer.port"
{{- end }}

{{/*
suppressd.config: the role's settings, config merged with <role>.config,
checked and rendered as ConfigMap data (variable: "value"), sorted. The
api* and link* settings go to the API only, consumer* to the consumer only.
dict "root" . "role" "api|consumer".
*/}}
{{- define "suppressd.config" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $names := include "suppressd.envNames" $root | fromYaml }}
{{- $not := include "suppressd.notConfig" $root | fromYaml }}
{{- $cfg := mergeOverwrite (deepCopy ($root.Values.config | default dict)) (deepCopy ((index $root.Values $role).config | default dict)) }}
{{- $out := dict }}
{{- range $k := keys $cfg | sortAlpha }}
{{- $v := index $cfg $k }}
{{- if hasKey $not $k }}
{{- fail (printf "config.%s: %s" $k (index $not $k)) }}
{{- end }}
{{- if not (hasKey $names $k) }}
{{- fail (printf "config.%s is not a suppressd setting (the keys are listed in values.yaml)" $k) }}
{{- end }}
{{- $str := "" }}
{{- if kindIs "slice" $v }}
{{- $str = join "," $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
{{- $str = printf "%d" (int64 $v) }}
{{- else if not (kindIs "invalid" $v) }}
{{- $str = toString $v }}
{{- end }}
{{- /* A role gets the other role's own settings neither in its ConfigMap nor in its checksum. */}}
{{- $other := ternary (list "consumer") (list "api" "link" "hooks") (eq $role "api") }}
{{- $foreign := false }}
{{- range $other }}{{ if hasPrefix . $k }}{{ $foreign = true }}{{ end }}{{ end }}
{{- if and (ne $str "") (not $foreign) }}
{{- $_ := set $out (index $names $k) $str }}
{{- end }}
{{- end }}
{{- $s := $root.Values.secrets }}
{{- if not $out.SUPPRESSD_REDIS_ADDRS }}
{{- fail "config.redisAddrs is required: the Redis address, cluster seeds or Sentinels (e.g. redis-master:6379)" }}
{{- end }}
{{- if not $out.SUPPRESSD_KAFKA_BROKERS }}
{{- fail "config.kafkaBrokers is required: the Kafka bootstrap brokers (e.g. kafka:9092); the consumer reads the topics, the API publishes to them" }}
{{- end }}
{{- if $s.kafkaTls.existingSecret }}
{{- if or $out.SUPPRESSD_KAFKA_TLS_CA_FILE $out.SUPPRESSD_KAFKA_TLS_CERT_FILE $out.SUPPRESSD_KAFKA_TLS_KEY_FILE }}
{{- fail "config.kafkaTls*File and secrets.kafkaTls.existingSecret: set one, not both" }}
{{- end }}
{{- if ne ($out.SUPPRESSD_KAFKA_TLS | default "" | lower) "true" }}
{{- fail "secrets.kafkaTls.existingSecret is set but config.kafkaTls is not true" }}
{{- end }}
{{- end }}
{{- if $s.redisTls.existingSecret }}
{{- if $out.SUPPRESSD_REDIS_TLS_CA_FILE }}
{{- fail "config.redisTlsCaFile and secrets.redisTls.existingSecret: set one, not both" }}
{{- end }}
{{- if ne ($out.SUPPRESSD_REDIS_TLS | default "" | lower) "true" }}
{{- fail "secrets.redisTls.existingSecret is set but config.redisTls is not true" }}
{{- end }}
{{- end }}
{{- if and $s.kafkaSaslPassword.existingSecret (not $out.SUPPRESSD_KAFKA_SASL_MECHANISM) }}
{{- fail "secrets.kafkaSaslPassword.existingSecret is set but config.kafkaSaslMechanism is not" }}
{{- end }}
{{- range $k := keys $out | sortAlpha }}
{{ $k }}: {{ index $out $k | quote }}
{{- end }}
{{- end }}

{{/* Where mounted secrets live in the container. */}}
{{- define "suppressd.secretsDir" -}}/etc/suppressd{{- end }}

{{/*
suppressd.pod: the pod template of one role.
dict "root" . "role" "api|consumer".
*/}}
{{- define "suppressd.pod" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $v := index $root.Values $role }}
{{- $s := $root.Values.secrets }}
{{- $dir := include "suppressd.secretsDir" $root }}
metadata:
  labels:
    {{- include "suppressd.roleLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "suppressd.config" . | sha256sum }}
    {{- if and (eq $role "api") $root.Values.api.brands }}
    checksum/brands: {{ $root.Values.api.brands | toJson | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "suppressd.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.automountServiceAccountToken }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  securityContext:
    {{- required "podSecurityContext is required" $root.Values.podSecurityContext | toYaml | nindent 4 }}
  containers:
    - name: suppressd
      image: {{ include "suppressd.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: ["serve"]
      ports:
        - name: http
          containerPort: {{ $v.port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "suppressd.roleName" . }}
      env:
        - name: SUPPRESSD_ROLE
          value: {{ $role }}
        {{- if eq $role "api" }}
        - name: SUPPRESSD_API_ADDR
          value: {{ printf ":%v" $v.port | quote }}
        {{- else }}
        - name: SUPPRESSD_OPS_ADDR
          value: {{ printf ":%v" $v.port | quote }}
        {{- end }}
        {{- if $s.pepper.existingSecret }}
        - name: SUPPRESSD_PEPPER_FILE
          value: {{ $dir }}/pepper/pepper
        {{- end }}
        {{- if eq $role "api" }}
        - name: SUPPRESSD_API_KEYS_FILE
          value: {{ $dir }}/api-keys/keys
        {{- if $s.linkKeys.existingSecret }}
        - name: SUPPRESSD_LINK_KEYS_FILE
          value: {{ $dir }}/link-keys/keys
        {{- end }}
        {{- if $root.Values.api.brands }}
        - name: SUPPRESSD_LINK_BRANDS_FILE
          value: {{ $dir }}/brands/brands.json
        {{- end }}
        {{- with $s.hooksMailgunSigningKey.existingSecret }}
        - name: SUPPRESSD_HOOKS_MAILGUN_SIGNING_KEY
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $s.hooksMailgunSigningKey.key }}
        {{- end }}
        {{- with $s.hooksPostmarkPassword.existingSecret }}
        - name: SUPPRESSD_HOOKS_POSTMARK_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $s.hooksPostmarkPassword.key }}
        {{- end }}
        {{- with $s.hooksPostmarkPathSecret.existingSecret }}
        - name: SUPPRESSD_HOOKS_POSTMARK_PATH_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $s.hooksPostmarkPathSecret.key }}
        {{- end }}
        {{- end }}
        {{- with $s.kafkaSaslPassword.existingSecret }}
        - name: SUPPRESSD_KAFKA_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $s.kafkaSaslPassword.key }}
        {{- end }}
        {{- with $s.redisPassword.existingSecret }}
        - name: SUPPRESSD_REDIS_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $s.redisPassword.key }}
        {{- end }}
        {{- with $s.redisSentinelPassword.existingSecret }}
        - name: SUPPRESSD_REDIS_SENTINEL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $s.redisSentinelPassword.key }}
        {{- end }}
        {{- if $s.kafkaTls.existingSecret }}
        {{- if $s.kafkaTls.caKey }}
        - name: SUPPRESSD_KAFKA_TLS_CA_FILE
          value: {{ $dir }}/kafka-tls/ca.crt
        {{- end }}
        {{- if $s.kafkaTls.certKey }}
        - name: SUPPRESSD_KAFKA_TLS_CERT_FILE
          value: {{ $dir }}/kafka-tls/tls.crt
        - name: SUPPRESSD_KAFKA_TLS_KEY_FILE
          value: {{ $dir }}/kafka-tls/tls.key
        {{- end }}
        {{- end }}
        {{- if $s.redisTls.existingSecret }}
        - name: SUPPRESSD_REDIS_TLS_CA_FILE
          value: {{ $dir }}/redis-tls/ca.crt
        {{- end }}
        {{- $limit := dig "limits" "memory" "" ($v.resources | default dict) }}
        {{- if and $root.Values.goMemLimitFromResources $limit }}
        # {{ $root.Values.goMemLimitPercent }} % of limits.memory ({{ $limit }}), in bytes.
        - name: GOMEMLIMIT
          value: {{ include "suppressd.goMemLimit" (dict "root" $root "role" $role "limit" $limit) | quote }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      livenessProbe:
        {{- required (printf "%s.livenessProbe is required" $role) $v.livenessProbe | toYaml | nindent 8 }}
      readinessProbe:
        {{- required (printf "%s.readinessProbe is required" $role) $v.readinessProbe | toYaml | nindent 8 }}
      {{- with $v.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- required "securityContext is required" $root.Values.securityContext | toYaml | nindent 8 }}
      {{- $mounts := include "suppressd.volumeMounts" . | trim }}
      {{- if $mounts }}
      volumeMounts:
        {{- $mounts | nindent 8 }}
      {{- end }}
  {{- $volumes := include "suppressd.volumes" . | trim }}
  {{- if $volumes }}
  volumes:
    {{- $volumes | nindent 4 }}
  {{- end }}
  {{- if $root.Values.topologySpread.enabled }}
  topologySpreadConstraints:
    {{- range $root.Values.topologySpread.topologyKeys }}
    - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
      topologyKey: {{ . }}
      whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "suppressd.roleSelectorLabels" $ | nindent 10 }}
      matchLabelKeys:
        - pod-template-hash
    {{- end }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
suppressd.goMemLimit: GOMEMLIMIT in bytes, goMemLimitPercent of a memory
limit (a Kubernetes quantity: 512Mi, 1.5Gi, 2G, 1e9, or bytes), rounded
down. With the whole limit the runtime would collect only once the kernel is
about to kill; the rest covers what the Go heap limit does not count.
dict "root" . "role" "api|consumer" "limit" <quantity>.
*/}}
{{- define "suppressd.goMemLimit" -}}
{{- $q := .limit }}
{{- $bytes := int64 0 }}
{{- if or (kindIs "float64" $q) (kindIs "int64" $q) (kindIs "int" $q) }}
{{- $bytes = int64 $q }}
{{- else }}
{{- $s := toString $q }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $s }}
{{- $suffix := trimPrefix $num $s }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 }}
{{- $mult := int64 0 }}
{{- if hasKey $units $suffix }}
{{- $mult = int64 (get $units $suffix) }}
{{- else if regexMatch "^[eE][0-9]+$" $suffix }}
{{- $mult = int64 1 }}
{{- range until (int (substr 1 -1 $suffix)) }}{{ $mult = mul $mult 10 }}{{ end }}
{{- end }}
{{- if or (not $num) (eq $mult 0) }}
{{- fail (printf "%s.resources.limits.memory %q: GOMEMLIMIT is computed from it, and the chart reads quantities in Ki, Mi, Gi, Ti, k, M, G, T, with an exponent (1e9) or bytes; or set goMemLimitFromResources: false" .role $s) }}
{{- end }}
{{- if contains "." $num }}
{{- $bytes = int64 (ceil (mulf (float64 $num) $mult)) }}
{{- else }}
{{- $bytes = mul (int64 $num) $mult }}
{{- end }}
{{- end }}
{{- $pct := int64 .root.Values.goMemLimitPercent }}
{{- /* bytes * pct / 100 without overflow: (bytes / 100) * pct + (bytes % 100) * pct / 100 */}}
{{- printf "%d" (add (mul (div $bytes 100) $pct) (div (mul (mod $bytes 100) $pct) 100)) }}
{{- end }}

{{- define "suppressd.volumeMounts" -}}
{{- $s := .root.Values.secrets }}
{{- $dir := include "suppressd.secretsDir" .root }}
{{- if $s.pepper.existingSecret }}
- name: pepper
  mountPath: {{ $dir }}/pepper
  readOnly: true
{{- end }}
{{- if eq .role "api" }}
- name: api-keys
  mountPath: {{ $dir }}/api-keys
  readOnly: true
{{- if $s.linkKeys.existingSecret }}
- name: link-keys
  mountPath: {{ $dir }}/link-keys
  readOnly: true
{{- end }}
{{- if .root.Values.api.brands }}
- name: brands
  mountPath: {{ $dir }}/brands
  readOnly: true
{{- end }}
{{- end }}
{{- if $s.kafkaTls.existingSecret }}
- name: kafka-tls
  mountPath: {{ $dir }}/kafka-tls
  readOnly: true
{{- end }}
{{- if $s.redisTls.existingSecret }}
- name: redis-tls
  mountPath: {{ $dir }}/redis-tls
  readOnly: true
{{- end }}
{{- with .root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "suppressd.volumes" -}}
{{- $s := .root.Values.secrets }}
{{- if $s.pepper.existingSecret }}
- name: pepper
  secret:
    secretName: {{ $s.pepper.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $s.pepper.key }}
        path: pepper
{{- end }}
{{- if eq .role "api" }}
- name: api-keys
  secret:
    secretName: {{ required "secrets.apiKeys.existingSecret is required with api.enabled: a Secret whose key holds one name:scope+scope:sha256hex entry per line" $s.apiKeys.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $s.apiKeys.key }}
        path: keys
{{- with $s.linkKeys.existingSecret }}
- name: link-keys
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $s.linkKeys.key }}
        path: keys
{{- end }}
{{- if .root.Values.api.brands }}
- name: brands
  configMap:
    name: {{ include "suppressd.roleName" . }}-brands
{{- end }}
{{- end }}
{{- if $s.kafkaTls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $s.kafkaTls.existingSecret }}
    defaultMode: 0440
    items:
      {{- if $s.kafkaTls.caKey }}
      - key: {{ $s.kafkaTls.caKey }}
        path: ca.crt
      {{- end }}
      {{- if $s.kafkaTls.certKey }}
      - key: {{ $s.kafkaTls.certKey }}
        path: tls.crt
      - key: {{ required "secrets.kafkaTls.keyKey is required with secrets.kafkaTls.certKey" $s.kafkaTls.keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- if $s.redisTls.existingSecret }}
- name: redis-tls
  secret:
    secretName: {{ $s.redisTls.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ required "secrets.redisTls.caKey is required with secrets.redisTls.existingSecret" $s.redisTls.caKey }}
        path: ca.crt
{{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
suppressd.alertSelector: the label matchers of this release's series, as
the ServiceMonitor labels them (job is the Service's name).
*/}}
{{- define "suppressd.alertSelector" -}}
namespace="{{ include "suppressd.namespace" . }}",job=~"{{ include "suppressd.fullname" . }}-(api|consumer)"
{{- end }}
