# late-monitor as a container (a sidecar or standalone). Configure with environment variables
# (LATE_API_KEY, LATE_MONITOR_NOTIFY__URLS='["slack://..."]', ...) or mount a config file at
# /etc/late-monitor/config.toml. State lives on the /var/lib/late-monitor volume.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STATE_DIRECTORY=/var/lib/late-monitor \
    LATE_MONITOR_HTTP__LISTEN=0.0.0.0:9687 \
    LATE_MONITOR_LOG__FORMAT=json

WORKDIR /src
COPY pyproject.toml README.md ./
COPY late_monitor ./late_monitor
RUN pip install . && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /var/lib/late-monitor late-monitor \
    && install -d -o late-monitor -g late-monitor -m 0700 /var/lib/late-monitor

USER late-monitor
WORKDIR /var/lib/late-monitor
VOLUME ["/var/lib/late-monitor"]
EXPOSE 9687

HEALTHCHECK --interval=60s --timeout=10s --start-period=30s \
    CMD ["late-monitor", "probe", "http://127.0.0.1:9687/healthz"]

ENTRYPOINT ["late-monitor"]
CMD ["run"]
