"""The boto3 peer of SqsJobSource's next/report loop: receive up to ten messages, read
each body as a JSON job, delete it. One process, sequential, as a CI script does it.

    python3 sqs_queue.py ENDPOINT QUEUE_URL

Prints one JSON line: jobs and seconds.
"""

import json
import sys
import time

import boto3


def main():
    endpoint, url = sys.argv[1], sys.argv[2]
    sqs = boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    jobs = 0
    start = time.monotonic()
    while True:
        out = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = out.get("Messages", [])
        if not messages:
            break
        for m in messages:
            job = json.loads(m["Body"])
            assert job["id"] and job["check"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            jobs += 1
    print(json.dumps({"jobs": jobs, "seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
