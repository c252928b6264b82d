# cardpulse pipeline image; see docker-compose.yml for Kafka, Redis and ClickHouse.
FROM node:20-bookworm-slim

WORKDIR /app
RUN chown node:node /app
USER node

# Dependencies first, so editing the code does not re-run the install. bin/cardpulse.js runs
# the TypeScript sources through tsx, a runtime dependency: no build step.
COPY --chown=node:node package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

COPY --chown=node:node . .

ENV HTTP_PORT=8080
EXPOSE 8080
# --no: never fetch an unrelated "cardpulse" package from the registry if the bin is missing.
CMD ["npx", "--no", "cardpulse", "run"]
